"""A local stand-in for Lambda's SQS event source mapping: receive a batch, invoke the worker with the real
SQS event shape, delete what succeeded, leave failures to come back after the visibility timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from local.events import LambdaContext
from postpay.limits import WORKER_BATCH_SIZE, WORKER_TIMEOUT_SECONDS

REGION = "us-east-1"


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


class QueuePoller:
    def __init__(
        self,
        queue_url: str,
        handler: Callable[[dict, Any], dict],
        *,
        visibility_timeout: int = 30,
        batch_size: int = WORKER_BATCH_SIZE,
    ) -> None:
        import boto3

        self.sqs = boto3.client("sqs")
        self.queue_url = queue_url
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.handler = handler
        self.visibility_timeout = visibility_timeout
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> QueuePoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def poll_once(self, wait_seconds: int = 0) -> int:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            AttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        event = sqs_event([dict(m) for m in messages], self.queue_arn)
        try:
            context = LambdaContext(
                function_name="automation-worker", timeout_ms=WORKER_TIMEOUT_SECONDS * 1000
            )
            result = self.handler(event, context)
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception:  # the whole invocation failed (Powertools raises when every record failed)
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                # No long polling: moto answers it by holding the request open, which the local moto
                # server (one request at a time) would spend blocking everyone else.
                if self.poll_once() == 0:
                    self._stop.wait(0.5)
            except Exception as error:  # keep polling, like the real event source mapping
                print(f"queue poller: {error!r}", flush=True)
                self._stop.wait(1)
