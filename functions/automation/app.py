"""Automation: the daily schedule (upkeep; invoicing on the 1st) and the operator's payloads.

    aws lambda invoke --function-name <AutomationFunctionName> \\
        --cli-binary-format raw-in-base64-out --payload '{"invoicingDate": "2022-11-01"}' out.json

A refused payload fails the invoke with a message that says what is wrong; nothing happens.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.billing.automation import invoker_of
from postpay.config import Settings
from postpay.container import Container
from postpay.observability import logger, metrics, tracer

settings = Settings.from_env()
container = Container(settings)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    return container.automation.handle(event, invoker_of(context))
