"""Email verification and terms (API Gateway REST proxy): GET /verify?token=…, POST /verify."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.config import Settings
from postpay.container import Container
from postpay.errors import (
    AlreadyProvisioning,
    RateLimited,
    SolusRejected,
    SolusUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from postpay.models import Account
from postpay.observability import logger, metrics, tracer
from postpay.routes import methods_of
from postpay.services.enrollment import TermsNotAccepted, WrongSignupPassword
from postpay.services.sessions import SESSION_COOKIE
from postpay.web.pages import Web, catch_all, cookie

settings = Settings.from_env()
container = Container(settings)
app = APIGatewayRestResolver()
web = Web(
    app,
    settings,
    routes=methods_of("verify"),
    seller=container.seller,
    signed_in=lambda session: container.sessions.live(session),
)
catch_all(app, web)

CHECKBOXES = {"tos": "accept_tos", "postpay": "accept_postpay_terms"}


def link_problem(error: Exception) -> Response:
    if isinstance(error, TokenExpired):
        return web.page(
            "link_problem.html",
            status=410,
            title="This link has expired",
            message="Confirmation links work for a limited time. Get a new one below.",
            used=False,
        )
    if isinstance(error, TokenUsed):
        return web.page(
            "link_problem.html",
            status=410,
            title="This link was already used",
            message="Your email address is already confirmed. Log in with your password to continue.",
            used=True,
        )
    return web.page(
        "link_problem.html",
        status=400,
        title="This link is not valid",
        message="The link is incomplete, or a newer one was sent to you. Use the latest email, "
        "or get a new link below.",
        used=False,
    )


@app.get("/verify")
def terms() -> Response:
    token = web.request.query_value("token") or ""
    try:
        attempt = container.enrollment.check_token(token)
    except TokenUsed as error:
        if error.email and signed_in_as(error.email):
            # Back after verifying, or the email's link opened again, by the client it verified, signed in:
            # their dashboard, not an error. Anyone else still gets "already used" (the link works once).
            return web.redirect("/dashboard")
        return link_problem(error)
    except (TokenInvalid, TokenExpired) as error:
        return link_problem(error)
    return web.page("terms.html", token=token, missing=[], error=None, email=attempt.email)


@app.post("/verify")
def accept() -> Response:
    fields = web.form()
    token = fields.get("token", "")
    accepted = {key for key, field in CHECKBOXES.items() if fields.get(field)}
    try:
        account = container.enrollment.accept(
            token,
            fields.get("password", ""),
            accepted,
            source_ip=web.request.source_ip,
            user_agent=web.request.user_agent,
            browser=web.browser_binding(),
        )
    except TermsNotAccepted as error:
        return web.page("terms.html", status=400, token=token, missing=error.missing, error=None)
    except WrongSignupPassword:
        return web.page(
            "terms.html",
            status=400,
            token=token,
            missing=[],
            error="This is not the password you chose when you signed up. Type it again.",
        )
    except RateLimited:
        return web.error(429, "Too many attempts", "Too many wrong passwords. Please try again later.")
    except TokenUsed as error:
        if error.same_browser and error.email and signed_in_as(error.email):
            return outcome(error.email, wait=True)  # a double submit from the browser that won
        return link_problem(error)
    except (TokenInvalid, TokenExpired) as error:
        return link_problem(error)
    # The link and the password chosen at sign-up were both presented: this browser is signed in.
    web.set_cookie(
        cookie(
            SESSION_COOKIE, container.sessions.start(account.email), max_age=container.sessions.cookie_max_age
        )
    )
    return outcome(account.email, wait=False)


def signed_in_as(email: str) -> bool:
    session = container.sessions.current(web.request.cookies.get(SESSION_COOKIE))
    return session is not None and session.email == email


def outcome(email: str, *, wait: bool) -> Response:
    """Enrolls the client and shows the outcome: enrolled, or "we are finishing your setup".

    Never starts a session: a used link is no proof of anything."""
    account: Account | None
    try:
        account = container.provisioner.provision(email, notify_if_later=True)
    except AlreadyProvisioning:
        account = (
            container.provisioner.wait_for_enrollment(email, seconds=settings.solusvm_page_budget_seconds)
            if wait
            else None
        )
    except (SolusUnavailable, SolusRejected):
        account = None
    if account is None or not account.enrolled:
        return web.redirect("/dashboard?notice=finishing")
    return web.redirect("/dashboard?notice=welcome")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # pages carry tokens, Location and cookies
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    with container.solus.deadline(settings.solusvm_page_budget_seconds):  # one budget for the whole page
        return app.resolve(event, context)
