"""Synthesize the real app once (the same context cdk.json gives `cdk synth`)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

ROOT = Path(__file__).resolve().parents[2]


def synthesize(outdir: Path, **overrides: object):
    from infra.app import build

    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], **overrides}
    app = cdk.App(context=context, outdir=str(outdir))
    stack = build(app)
    app.synth()
    return stack


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory):
    outdir = tmp_path_factory.mktemp("cdk.out")
    stack = synthesize(outdir)
    return stack, Template.from_stack(stack), outdir


@pytest.fixture(scope="session")
def template(synthesized) -> Template:
    return synthesized[1]


@pytest.fixture(scope="session")
def resources(template: Template) -> dict:
    return template.to_json()["Resources"]
