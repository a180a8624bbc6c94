"""Synthesize the real app (the same context cdk.json gives `cdk synth`), once per set of overrides."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

ROOT = Path(__file__).resolve().parents[2]

# The deployment variants every check runs against: the README's first deploy (the API's own URL, a new
# SES identity), a second stage on the same domain (an existing identity) that takes cards (Stripe), and a
# custom domain with DNS.
VARIANTS: dict[str, dict[str, object]] = {
    "stage-url": {},
    "existing-ses-identity": {
        "stage": "test",
        "useExistingSesIdentity": True,
        "stripePublishableKey": "pk_test_rehearsal",
        "carryBelowMinimum": True,
    },
    "custom-domain": {
        "domainName": "billing.example.com",
        "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f6a2f1e-0000-4000-8000-0000000000",
        "hostedZoneId": "Z0123456789ABCDEFGHIJ",
        "hostedZoneName": "example.com",
        "senderDomain": "example.net",  # its own identity: the rehearsal runs every variant in one account
        "senderAddress": "billing@example.net",
    },
}


@dataclass
class Synthesized:
    stack: Any
    template: Template
    outdir: Path

    @property
    def template_file(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"

    @property
    def json(self) -> dict:
        return json.loads(self.template_file.read_text())


def synthesize(outdir: Path, **overrides: object):
    from infra.app import build

    context = {**json.loads((ROOT / "cdk.json").read_text())["context"], **overrides}
    app = cdk.App(context=context, outdir=str(outdir))
    stack = build(app)
    app.synth()
    return stack


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Synthesized]:
    """``synth("custom-domain")``: that variant synthesized once per session."""
    done: dict[str, Synthesized] = {}

    def get(variant: str) -> Synthesized:
        if variant not in done:
            outdir = tmp_path_factory.mktemp(f"cdk.out-{variant}")
            stack = synthesize(outdir, **VARIANTS[variant])
            done[variant] = Synthesized(stack, Template.from_stack(stack), outdir)
        return done[variant]

    return get


@pytest.fixture(scope="session")
def synthesized(synth):
    default = synth("stage-url")
    return default.stack, default.template, default.outdir


@pytest.fixture(scope="session")
def template(synthesized) -> Template:
    return synthesized[1]


@pytest.fixture(scope="session")
def resources(template: Template) -> dict:
    return template.to_json()["Resources"]
