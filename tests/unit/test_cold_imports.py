"""What each function's cold start imports: not what its first request rarely needs (README, Cold start).

Each function is imported in a fresh interpreter, as deployed (tracing on, settings from the stack), and the
modules it deferred must not be loaded yet. A new top-level import of one of them fails here, not months later
as a slower cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.coldstart import _LOAD, FUNCTIONS, ROOT, environment

# Deferred by every function: the X-Ray SDK (built on the first traced invocation), Parameters (the first
# secret or price read), the Stripe SDK (the gateway's first call), fpdf2 (the first PDF), zxcvbn and argon2
# (the first password check or hash), Invoicing's batch machinery outside the worker.
EVERY_FUNCTION = {
    "aws_xray_sdk",
    "aws_lambda_powertools.utilities.parameters",
    "stripe",
    "fpdf",
    "zxcvbn",
    "argon2",
}
DEFERRED = {
    "signup": EVERY_FUNCTION | {"postpay.payments", "postpay.billing.invoicing"},
    "verify": EVERY_FUNCTION | {"postpay.payments", "postpay.billing.invoicing"},
    "sso": EVERY_FUNCTION | {"postpay.billing.collection", "postpay.billing.invoicing", "postpay.payments"},
    "payments": EVERY_FUNCTION
    | {"postpay.billing.collection", "postpay.billing.invoicing", "postpay.payments"},
    # the daily schedule is its usual first request: no operator command types, no invoicing, no payments
    "automation": EVERY_FUNCTION
    | {
        "postpay.billing.commands",
        "postpay.billing.invoicing",
        "postpay.billing.exports",
        "postpay.payments",
        "csv",
    },
    "automation-worker": EVERY_FUNCTION | {"postpay.billing.commands", "postpay.billing.automation"},
}


def in_fresh_interpreter(path: str, then: str) -> Any:
    """Imports the function at ``path`` as deployed, runs ``then``, and returns the JSON it printed last."""
    body = _LOAD.format(path=str(ROOT / path)) + "\n" + then
    out = subprocess.run(
        [sys.executable, "-c", body], env=environment(), cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def loaded_by(path: str) -> set[str]:
    return set(in_fresh_interpreter(path, "import json, sys\nprint(json.dumps(sorted(sys.modules)))"))


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_a_cold_start_imports_nothing_its_first_request_rarely_needs(function):
    path, _ = FUNCTIONS[function]
    loaded = loaded_by(path)
    assert "postpay.config" in loaded  # it did import the function
    assert sorted(DEFERRED[function] & loaded) == []


def test_the_check_sees_an_import_it_forbids():
    assert {"postpay.payments", "postpay.billing.invoicing"} <= loaded_by("functions/automation/worker.py")


# The run handler's usual first request, on a day that is not the 1st: DynamoDB's two reads stubbed, the rest
# wired as deployed (Stripe off, as the stack starts).
_SCHEDULED_REQUEST = """
import json, sys
from types import SimpleNamespace

class Billing:
    def daily_heartbeat(self, now):
        return None

class Upkeep:
    def run(self, today):
        return SimpleNamespace(as_dict=lambda: {{}})

module.container.__dict__.update(billing=Billing(), upkeep=Upkeep())
answer = module.container.automation.handle({event})
print(json.dumps({{"answer": answer, "modules": sorted(sys.modules)}}))
"""


def first_request(event: dict) -> tuple[dict, set[str]]:
    done = in_fresh_interpreter("functions/automation/app.py", _SCHEDULED_REQUEST.format(event=repr(event)))
    return done["answer"], set(done["modules"])


def test_the_schedules_request_off_the_1st_builds_no_invoicing_and_imports_no_operator_commands():
    # When EventBridge's event of the 27th is the run handler's first request
    answer, loaded = first_request({"source": "aws.events", "time": "2026-11-27T00:05:00Z"})
    # Then it ran the daily job without the operator's command types, Invoicing or the payment types
    assert answer == {"date": "2026-11-27", "upkeep": {}}
    assert (
        sorted(loaded & {"postpay.billing.commands", "postpay.billing.invoicing", "postpay.payments"}) == []
    )


def test_an_operators_payload_imports_the_commands_it_needs():
    # When the operator's run of the daily job is the first request: its command types come with it
    answer, loaded = first_request({"schedule": "daily"})
    assert "upkeep" in answer
    assert "postpay.billing.commands" in loaded and "postpay.billing.invoicing" not in loaded
