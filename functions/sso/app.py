"""Client area (API Gateway REST proxy): POST /sso, the one-click login into the SolusVM control panel."""

from __future__ import annotations

from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.config import Settings
from postpay.container import Container
from postpay.errors import SolusRejected, SolusUnavailable
from postpay.observability import logger, metrics, tracer
from postpay.services.sessions import SESSION_COOKIE
from postpay.web.pages import Web, catch_all

settings = Settings.from_env()
container = Container(settings)
app = APIGatewayRestResolver()
web = Web(app, settings, routes={"/sso": {"POST"}})
catch_all(app, web)


@app.post("/sso")
def sso() -> Response:
    session = container.sessions.current(web.request.cookies.get(SESSION_COOKIE))
    if session is None:
        return web.redirect("/login")
    web.form()  # CSRF and origin checks
    account = container.store.get_account(session.email)
    if account is None or not account.enrolled or account.solus_user_id is None:
        return web.page("finishing.html")
    try:
        token = container.solus.one_time_login_token(account.solus_user_id)
    except (SolusUnavailable, SolusRejected):
        return web.page("sso_unavailable.html")
    # The token goes only into the Location header: never logged, never in a page.
    return web.redirect(settings.sso_url_template.replace("{token}", quote(token, safe="")), status=302)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
