"""Automation worker: one SQS message = one (account, period) to invoice.

The batch's usage is fetched in parallel and its invoices written together (``prepare``), as much of the
batch as the invocation has time for (postpay.limits); then each record ends on its own (its email). A job
left out of the batch starts only if the invocation still has time for it; the rest is handed back
untouched. Partial batch failures: a failing account is retried by the queue (then its dead-letter queue
after the configured attempts) while the others in the batch complete.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.billing.invoicing import Job, Prepared
from postpay.config import Settings
from postpay.container import Container
from postpay.observability import logger, metrics, tracer

settings = Settings.from_env()
container = Container(settings)
processor = BatchProcessor(event_type=EventType.SQS)
prepared: dict[str, Prepared] = {}  # this invocation's batch, by message id
# its jobs taken by record_handler (their emails' marks may be on their way)
finishing: dict[str, Prepared] = {}


def prepare(event: dict, context: LambdaContext) -> None:
    """Usage and invoices for the batch's well-formed records at once (a malformed one fails alone)."""
    deliveries: dict[str, tuple[Job, int]] = {}
    for record in event.get("Records") or []:
        try:
            job = Job.from_message(json.loads(record["body"]))
            delivery = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
            deliveries[record["messageId"]] = (job, delivery)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # record_handler raises for it: a batch item failure
    prepared.clear()
    prepared.update(
        container.invoicing.prepare_batch(deliveries, remaining_ms=context.get_remaining_time_in_millis())
    )


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    job = Job.from_message(json.loads(record.body))
    delivery = int(record.attributes.approximate_receive_count or 1)
    item = prepared.pop(record.message_id, None)
    if item is not None:
        finishing[record.message_id] = item
    with logger.append_context_keys(run_id=job.run_id, client_id=job.client_id, attempt=delivery):
        return container.invoicing.attempt(
            job,
            delivery=delivery,
            remaining_ms=lambda_context.get_remaining_time_in_millis(),
            prepared=item,
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    prepare(event, context)
    unmarked: list[str] = []
    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:  # records that never reached their job (a malformed one among them): nothing left running
        container.invoicing.discard(prepared.values())
        prepared.clear()
        try:
            unmarked = container.invoicing.settle(finishing)  # the emails' "sent" marks, written meanwhile
        finally:  # never answered for by the next batch
            finishing.clear()
    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    response["batchItemFailures"] += [{"itemIdentifier": i} for i in unmarked if i not in failed]
    return response
