"""Stripe's webhook (API Gateway REST proxy): POST /payments/stripe.

A request that is not a genuine, fresh event (no or a wrong signature, too old, not JSON) is answered 400,
never 5xx, so a forger learns nothing and Stripe does not retry it; a genuine one is processed once and
answered 200, unknown event types included.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.config import Settings
from postpay.container import Container
from postpay.errors import BadEvent
from postpay.observability import logger, metrics, tracer
from postpay.routes import methods_of

settings = Settings.from_env()
container = Container(settings)
app = APIGatewayRestResolver()


def _answer(status: int, message: str) -> Response:
    return Response(status, content_types.APPLICATION_JSON, {"message": message})


@app.post("/payments/stripe")
def stripe_event() -> Response:
    if container.collection is None:
        return _answer(404, "card payments are not configured")
    body = app.current_event.decoded_body or ""
    signature = app.current_event.headers.get("Stripe-Signature") or app.current_event.headers.get(
        "stripe-signature"
    )
    try:
        outcome = container.collection.on_event(body, signature)
    except BadEvent as error:
        logger.warning("webhook refused", extra={"reason": str(error)})
        metrics.add_metric(name="WebhookRefused", unit="Count", value=1)
        return _answer(400, f"refused: {error}")
    return _answer(200, outcome)


@app.not_found
def not_found(_: Exception) -> Response:
    allowed = methods_of("payments").get(app.current_event.path)
    if allowed:  # the routes table's path, another method
        return Response(
            405,
            content_types.APPLICATION_JSON,
            {"message": "method not allowed"},
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    return _answer(404, "not found")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
