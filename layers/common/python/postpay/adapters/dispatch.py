"""The one module that invokes Lambda: the automation function hands a run's queuing to itself,
asynchronously, so the operator's invoke returns at once whatever the number of accounts."""

from __future__ import annotations

import json
from typing import Any


class LambdaDispatcher:
    def __init__(self, function_name: str, *, client: Any = None) -> None:
        self.function_name = function_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("lambda")
        return self._client

    def queue_run(self, run_id: str) -> None:
        """An asynchronous invocation (Lambda retries it twice on failure; queuing a run is repeatable)."""
        self.client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps({"queueRun": run_id}).encode("utf-8"),
        )
