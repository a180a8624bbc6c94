"""Which AWS calls each function makes, as the integration tests see them: the evidence the IAM test
(tests/infra/test_iam.py) checks every role against, instead of the table that built the policies.

Every botocore call (boto3 and PynamoDB alike go through ``BaseClient._make_api_call``) made while a
handler of ``functions/<name>/`` is on the stack is recorded as (function, IAM action, resource): for
DynamoDB the table's logical name (and ``/index/<name>``), each item of a transaction as the action IAM
checks for it. Calls made by the tests themselves or the local stack are not any function's.

``RECORD_AWS_CALLS=1 make integration`` rewrites ``tests/infra/aws_calls.json`` from a full run; every run
fails its last test if a function made a call that file lacks (tests/integration/test_zz_aws_calls.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "infra" / "aws_calls.json"
FUNCTIONS = ROOT / "functions"
# The stack's name for each handler file (tests/infra/test_stack.py's folders)
NAMES = {
    "signup/app.py": "signup",
    "verify/app.py": "verify",
    "sso/app.py": "sso",
    "payments/app.py": "payments",
    "automation/app.py": "AutomationRun",
    "automation/worker.py": "AutomationWorker",
}
IAM_PREFIX = {"sesv2": "ses"}
# API operations IAM authorizes under another action's name
IAM_ACTION = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "lambda:Invoke": "lambda:InvokeFunction",
}
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}

SPILL = "POSTPAY_AWS_CALLS_DIR"  # where the processes of the tests' Lambda pool write what they recorded
_calls: set[tuple[str, str, str]] = set()
_spilling = False
_lock = threading.Lock()


def _function_on_stack() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(str(FUNCTIONS)):
            return NAMES.get(Path(filename).relative_to(FUNCTIONS).as_posix())
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _table(name: str, prefix: str) -> str:
    return name.removeprefix(prefix) if prefix and name.startswith(prefix) else name


def calls_of(
    service: str, operation: str, params: dict[str, Any], *, table_prefix: str
) -> Iterator[tuple[str, str]]:
    """(IAM action, resource) for one API call."""
    prefix = IAM_PREFIX.get(service, service)
    if service != "dynamodb":
        action = f"{prefix}:{operation}"
        yield IAM_ACTION.get(action, action), "*"
        return
    if operation in ("TransactWriteItems", "TransactGetItems"):
        for item in params.get("TransactItems", []):
            for kind, request in item.items():
                yield f"dynamodb:{TRANSACT_ACTIONS[kind]}", _table(request["TableName"], table_prefix)
        return
    if operation in ("BatchWriteItem", "BatchGetItem"):
        for table in params.get("RequestItems", {}):
            yield f"dynamodb:{operation}", _table(table, table_prefix)
        return
    resource = _table(params.get("TableName", "*"), table_prefix)
    if params.get("IndexName"):
        resource += f"/index/{params['IndexName']}"
    yield f"dynamodb:{operation}", resource


def _record(function: str | None, service: str, operation: str, params: dict[str, Any], prefix: str) -> None:
    if function is None:
        return
    with _lock:
        new = {
            (function, *call) for call in calls_of(service, operation, params, table_prefix=prefix)
        } - _calls
        _calls.update(new)
        if new and _spilling:  # a process of the tests' Lambda pool: the session merges what it wrote
            Path(os.environ[SPILL], f"{os.getpid()}.json").write_text(json.dumps(sorted(_calls)))


def _record_parameters() -> None:
    """Powertools' parameter cache is shared by every function of a test process, so a function may never
    reach botocore for a value another one read: what a function asks Powertools for is recorded instead,
    as the call it makes on a cold start."""
    from aws_lambda_powertools.utilities import parameters

    asks = {
        "get_parameter": ("ssm", "GetParameter"),
        "get_parameters": ("ssm", "GetParametersByPath"),
        "get_secret": ("secretsmanager", "GetSecretValue"),
    }
    for name, (service, operation) in asks.items():
        original = getattr(parameters, name)

        def asking(
            *args: Any, _original: Any = original, _call: tuple[str, str] = (service, operation), **kw: Any
        ) -> Any:
            _record(_function_on_stack(), _call[0], _call[1], {}, "")
            return _original(*args, **kw)

        setattr(parameters, name, asking)


def install(table_prefix: str, *, spill: bool = False) -> None:
    """Records every AWS call a function makes in this process from now on; ``spill``: also into a file of
    the SPILL directory (a process of the Lambda pool)."""
    from botocore.client import BaseClient

    global _spilling
    _spilling = spill
    original = BaseClient._make_api_call
    if getattr(original, "recording", False):
        return
    _record_parameters()

    def recording(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        function = _function_on_stack()
        if function is not None:
            service = self.meta.service_model.service_name
            with _lock:
                for action, resource in calls_of(
                    service, operation_name, api_params, table_prefix=table_prefix
                ):
                    _calls.add((function, action, resource))
        return original(self, operation_name, api_params)

    recording.recording = True  # type: ignore[attr-defined]
    BaseClient._make_api_call = recording  # type: ignore[method-assign]


def recorded() -> dict[str, dict[str, list[str]]]:
    """function -> IAM action -> resources, as recorded in this process and the pool's (SPILL)."""
    out: dict[str, dict[str, set[str]]] = {}
    with _lock:
        calls = set(_calls)
    if SPILL in os.environ:
        for spilled in Path(os.environ[SPILL]).glob("*.json"):
            calls.update(tuple(call) for call in json.loads(spilled.read_text()))
    for function, action, resource in calls:
        out.setdefault(function, {}).setdefault(action, set()).add(resource)
    return {f: {a: sorted(r) for a, r in sorted(acts.items())} for f, acts in sorted(out.items())}


def load() -> dict[str, dict[str, list[str]]]:
    return json.loads(RECORDED.read_text())


def save(calls: dict[str, dict[str, list[str]]]) -> None:
    RECORDED.write_text(json.dumps(calls, indent=2, sort_keys=True) + "\n")
