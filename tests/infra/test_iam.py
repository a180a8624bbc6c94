"""Least privilege, from the evidence: each function's role grants every AWS call the integration tests
recorded that function making (tests/infra/aws_calls.json, written by tests/aws_calls.py), on the table or
index it was made on; and its DynamoDB grants hold nothing the function was never seen to call.

This checks the synthesized template against what the code does, not against the table that built the
policies (infra/stack.py's TABLE_ACCESS), so a grant missing from both fails here."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests import aws_calls
from tests.infra.test_stack import _actions, _statements, _table_id, _table_name

RECORDED = aws_calls.load()


def _targets(statement: dict) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _dynamo_target(resources: dict, target: Any) -> str | None:
    """ "<table>" or "<table>/index/<name>" for a DynamoDB resource of the template, else None."""
    if isinstance(target, dict) and "Fn::GetAtt" in target:
        logical_id = target["Fn::GetAtt"][0]
        if resources[logical_id]["Type"] == "AWS::DynamoDB::Table":
            return _table_name(resources[logical_id])
    if isinstance(target, dict) and "Fn::Join" in target:
        parts = target["Fn::Join"][1]
        if isinstance(parts[0], dict) and "Fn::GetAtt" in parts[0] and len(parts) == 2:
            logical_id = parts[0]["Fn::GetAtt"][0]
            if resources[logical_id]["Type"] == "AWS::DynamoDB::Table":
                return _table_name(resources[logical_id]) + parts[1]
    return None


def _allows(statement: dict, action: str) -> bool:
    return statement.get("Effect", "Allow") == "Allow" and any(
        fnmatchcase(action, pattern) for pattern in _actions(statement)
    )


def _grants(resources: dict, statements: list[dict], action: str, resource: str) -> bool:
    for statement in statements:
        if not _allows(statement, action):
            continue
        if not action.startswith("dynamodb:"):
            return True
        for target in _targets(statement):
            granted = _dynamo_target(resources, target)
            if granted is not None and fnmatchcase(resource, granted):
                return True
    return False


def _recorded_calls() -> list[tuple[str, str, str]]:
    return [
        (function, action, resource)
        for function, actions in sorted(RECORDED.items())
        for action, resources in sorted(actions.items())
        for resource in resources
    ]


def test_the_evidence_covers_every_function():
    assert set(RECORDED) == {"signup", "verify", "sso", "payments", "AutomationRun", "AutomationWorker"}


@pytest.mark.parametrize(("function", "action", "resource"), _recorded_calls())
def test_each_role_grants_every_call_its_function_makes(resources, function, action, resource):
    if action.startswith("dynamodb:"):
        _table_id(resources, resource.split("/index/")[0])  # the table exists in the template
    assert _grants(resources, _statements(resources, function), action, resource), (
        f"the {function} function calls {action} on {resource}, and its role does not allow it"
    )


@pytest.mark.parametrize("function", sorted(RECORDED))
def test_each_roles_dynamodb_grants_are_calls_its_function_makes(resources, function):
    """Nothing broader than the evidence: each action granted on a table was called on that table (or
    one of its indexes), and each index granted was queried. (A grant covers the table and its named
    indexes in one statement, so the actions on an index are judged with its table's.)"""
    seen: dict[str, set[str]] = {}
    for action, called in RECORDED[function].items():
        for resource in called:
            table = resource.split("/index/")[0]
            seen.setdefault(table, set()).add(action)
            seen.setdefault(resource, set()).add(action)
    unused = set()
    for statement in _statements(resources, function):
        for action in (a for a in _actions(statement) if a.startswith("dynamodb:")):
            assert "*" not in action, statement
            for target in _targets(statement):
                granted = _dynamo_target(resources, target)
                assert granted is not None and "*" not in granted, statement
                if "/index/" in granted and not seen.get(granted):
                    unused.add(f"{granted} (never queried)")
                elif "/index/" not in granted and action not in seen.get(granted, set()):
                    unused.add(f"{action} on {granted}")
    assert not unused, f"granted to {function} but never called in the integration tests: {sorted(unused)}"
