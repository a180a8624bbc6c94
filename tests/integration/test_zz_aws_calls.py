"""Runs last (file order): every AWS call a function made in this run is one tests/infra/aws_calls.json
lists, so the IAM test (tests/infra/test_iam.py) checks the roles against what the code really calls.
``RECORD_AWS_CALLS=1`` rewrites the file from this run (run the whole integration suite for it)."""

from __future__ import annotations

import os

from tests import aws_calls


def test_every_recorded_aws_call_is_in_the_iam_tests_evidence(stack):
    recorded = aws_calls.recorded()
    assert recorded, "no call recorded: is the recorder installed (tests/integration/conftest.py)?"
    if os.environ.get("RECORD_AWS_CALLS") == "1":
        aws_calls.save(recorded)
    known = aws_calls.load()
    missing = {
        f"{function} {action} {resource}"
        for function, actions in recorded.items()
        for action, resources in actions.items()
        for resource in resources
        if resource not in known.get(function, {}).get(action, [])
    }
    assert not missing, (
        "functions made AWS calls tests/infra/aws_calls.json does not list (re-record with "
        f"RECORD_AWS_CALLS=1 make integration, then check the roles): {sorted(missing)}"
    )
