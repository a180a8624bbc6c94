"""Automation worker: one SQS message = one (account, period) to invoice.

Partial batch failures: a failing account is retried by the queue (then its dead-letter queue after the
configured attempts) while the others in the batch complete. A job starts only if the invocation has time
left for it; the rest of the batch is handed back untouched (postpay.limits).
"""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.billing.invoicing import Job
from postpay.config import Settings
from postpay.container import Container
from postpay.observability import logger, metrics, tracer

settings = Settings.from_env()
container = Container(settings)
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    job = Job.from_message(json.loads(record.body))
    delivery = int(record.attributes.approximate_receive_count or 1)
    with logger.append_context_keys(run_id=job.run_id, client_id=job.client_id, attempt=delivery):
        return container.invoicing.attempt(
            job, delivery=delivery, remaining_ms=lambda_context.get_remaining_time_in_millis()
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
