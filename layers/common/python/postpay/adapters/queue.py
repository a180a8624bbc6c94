"""The one module that talks to SQS: the invoicing jobs queue."""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from typing import Any

from postpay.observability import logger

_BATCH = 10  # SQS's maximum per SendMessageBatch


class SqsQueue:
    def __init__(self, url: str, *, client: Any = None) -> None:
        self.url = url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send_all(self, messages: Iterable[dict[str, Any]]) -> int:
        """Sends the messages in batches of ten as they come (a run's first jobs are on the queue while its
        accounts are still being listed), retrying entries SQS refused; returns how many were sent."""
        sent = 0
        source = iter(messages)
        while batch := list(islice(source, _BATCH)):
            pending = {str(i): m for i, m in enumerate(batch)}
            for _ in range(5):
                answer = self.client.send_message_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": key, "MessageBody": json.dumps(body)} for key, body in pending.items()],
                )
                for ok in answer.get("Successful", []):
                    pending.pop(ok["Id"], None)
                    sent += 1
                if not pending:
                    break
                logger.warning("SQS refused some jobs; retrying", extra={"failed": len(pending)})
            if pending:
                raise RuntimeError(f"SQS refused {len(pending)} jobs after 5 attempts")
        return sent
