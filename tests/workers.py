"""Separate processes that run handlers, as separate Lambda execution environments do.

Powertools' resolver keeps the current event on a class attribute: one process runs one invocation at a
time, exactly like Lambda. Concurrency tests therefore invoke handlers in a pool of processes."""

from __future__ import annotations

import sys
from typing import Any


def init(paths: list[str], table_prefix: str | None = None) -> None:
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    if table_prefix is not None:  # record the AWS calls of the handlers run here (tests/aws_calls.py)
        from tests import aws_calls

        aws_calls.install(table_prefix, spill=True)


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    from local.events import LambdaContext, load_function

    return load_function(function).handler(event, LambdaContext(function_name=function))


def warm(function: str) -> bool:
    from local.events import load_function

    load_function(function)
    if function == "automation":
        load_function(function, "worker")
    return True


def invoke_worker(event: dict[str, Any]) -> dict[str, Any]:
    from local.events import LambdaContext, load_function
    from postpay.limits import WORKER_TIMEOUT_SECONDS

    context = LambdaContext(function_name="worker", timeout_ms=WORKER_TIMEOUT_SECONDS * 1000)
    try:
        return load_function("automation", "worker").handler(event, context)
    except Exception as error:  # every record failed: Lambda would report the invocation as failed
        return {"failed": repr(error)}
