"""`cdk synth` / `cdk deploy` entry point (see cdk.json). Works offline and without Docker."""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "layers" / "common" / "python"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from infra.config import StackConfig  # noqa: E402
from infra.stack import PostPayStack  # noqa: E402


def build(app: cdk.App) -> PostPayStack:
    config = StackConfig.from_context(app.node.try_get_context)
    stack = PostPayStack(
        app,
        f"PostPay-{config.stage}",
        config=config,
        description="Post-Pay: usage billing for SolusVM 2 (sign-up, client area, invoicing)",
    )
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stack


if __name__ == "__main__":
    application = cdk.App()
    build(application)
    application.synth()
