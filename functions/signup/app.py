"""Landing page and sign-up form (API Gateway REST proxy): GET /, GET|POST /signup, GET /signup/sent."""

from __future__ import annotations

import time

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.config import Settings
from postpay.container import Container
from postpay.errors import RateLimited
from postpay.observability import logger, metrics, tracer
from postpay.routes import methods_of
from postpay.validation import validate_signup
from postpay.web.pages import Web, at_least, catch_all

settings = Settings.from_env()
container = Container(settings)
app = APIGatewayRestResolver()
web = Web(
    app,
    settings,
    routes=methods_of("signup"),
    seller=container.seller,
    signed_in=lambda session: container.sessions.live(session),
)
catch_all(app, web)


@app.get("/")
def landing() -> Response:
    try:
        pricing = container.pricing()
    except Exception:  # the page explains the offer even when the price cannot be read
        logger.exception("token price unavailable")
        pricing = None
    return web.page("landing.html", pricing=pricing)


@app.get("/signup")
def signup_form() -> Response:
    return web.page("signup.html", values={}, errors={})


@app.post("/signup")
def signup() -> Response:
    fields = web.form()
    form, errors = validate_signup(fields)
    if form is None:
        values = {key: fields.get(key, "") for key in ("name", "company", "email")}
        return web.page("signup.html", status=400, values=values, errors=errors)
    # The floor covers what depends on the address; validation depends only on what was typed.
    started = time.monotonic()
    try:
        container.enrollment.signup(form, source_ip=web.request.source_ip)
    except RateLimited:
        return web.error(429, "Too many attempts", "Too many sign-up attempts. Please try again later.")
    at_least(started, settings.signup_min_response_ms)
    # post-redirect-get: reloading "Check your inbox" never sends the form again. The page names no address,
    # so it reads the same for a new and a known one, and the address stays out of the URL (and of logs).
    return web.redirect("/signup/sent")


@app.get("/signup/sent")
def check_inbox() -> Response:
    return web.page("check_inbox.html")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # pages carry tokens, Location and cookies
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
