"""Client area (API Gateway REST proxy): log-in, dashboard, SSO into SolusVM, invoices, password reset."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from postpay.config import Settings
from postpay.container import Container
from postpay.errors import (
    AlreadyProvisioning,
    CardNotSaved,
    GatewayError,
    NotPayable,
    RateLimited,
    SolusRejected,
    SolusUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from postpay.models import Account, AccountStatus, Invoice, InvoiceStatus, Session
from postpay.observability import logger, metrics, tracer
from postpay.periods import local_date
from postpay.routes import methods_of
from postpay.services.client_area import LoginFailed, PasswordRejected
from postpay.services.sessions import SESSION_COOKIE
from postpay.validation import validate_billing_details
from postpay.web.http import HttpError
from postpay.web.pages import Web, at_least, catch_all, cookie, script, stripe_headers

settings = Settings.from_env()
container = Container(settings)
app = APIGatewayRestResolver()
web = Web(
    app,
    settings,
    routes=methods_of("sso"),
    seller=container.seller,
    signed_in=lambda session: container.sessions.live(session),
)
catch_all(app, web)

NOTICES = {
    "panel-unavailable": ("The control panel is unavailable, try again shortly.", True),
    "not-enrolled": ("Your control panel account is not ready yet.", True),
    "setup-pending": ("We could not finish your setup just now. We will retry and email you.", True),
    "enrolled": ("Your control panel account is ready.", False),
    "password-changed": ("Your password is changed. Every other session is logged out.", False),
    "billing-saved": ("Your billing details are saved. Your next invoices will show them.", False),
    "welcome": (
        "Your account is ready. You can start servers in the control panel now; you pay after use.",
        False,
    ),
    "finishing": (
        "We are finishing your setup. Your email address is confirmed and your acceptance of the terms is "
        "recorded; we will email you as soon as your control panel account is ready.",
        False,
    ),
    "card-saved": ("Your card is saved. New invoices are charged to it when they are issued.", False),
    "card-removed": ("Your card is removed. Invoices are paid by bank transfer.", False),
    "paid": ("Thank you: the invoice is paid.", False),
    "refunded": (
        "This invoice was cancelled before your payment went through, so we refunded it in full. "
        "You owe nothing for it.",
        False,
    ),
    "processing": (
        "Thank you: your payment is being processed. The invoice turns paid once it clears.",
        False,
    ),
}


class LoginRequired(Exception):
    """No live session: the client goes to the login page."""


@app.exception_handler(LoginRequired)
def _to_login(_: LoginRequired) -> Response:
    return web.redirect("/login")


def session_id() -> str | None:
    return web.request.cookies.get(SESSION_COOKIE)


def signed_in() -> tuple[Session, Account]:
    session = container.sessions.current(session_id())
    account = container.accounts.get_account(session.email) if session else None
    if session is None or account is None or account.status is AccountStatus.PENDING:
        raise LoginRequired()
    web.mark_signed_in()
    return session, account


def today() -> date:
    """The billing time zone's date: an invoice is overdue the day after its due date there."""
    return local_date(container.clock.now(), settings.billing_timezone)


def dashboard_with(notice: str) -> Response:
    return web.redirect(f"/dashboard?notice={notice}")


# login and logout ---------------------------------------------------------------------------------


@app.get("/login")
def login_form() -> Response:
    return web.page("login.html", email="", error=None, notice=None)


@app.post("/login")
def login() -> Response:
    started = time.monotonic()
    fields = web.form()
    email = fields.get("email", "")
    try:
        account = container.client_area.login(
            email, fields.get("password", ""), source_ip=web.request.source_ip
        )
    except RateLimited:
        at_least(started, settings.signup_min_response_ms)
        return web.error(429, "Too many attempts", "Too many failed log-ins. Please try again later.")
    except LoginFailed:
        at_least(started, settings.signup_min_response_ms)
        return web.page(
            "login.html", status=401, email=email[:254], error="Email or password is incorrect.", notice=None
        )
    container.sessions.end(session_id())  # a new id at every log-in: no session fixation
    web.set_cookie(
        cookie(
            SESSION_COOKIE, container.sessions.start(account.email), max_age=container.sessions.cookie_max_age
        )
    )
    at_least(started, settings.signup_min_response_ms)
    return web.redirect("/dashboard")


@app.post("/logout")
def logout() -> Response:
    web.form()
    container.sessions.end(session_id())
    web.set_cookie(cookie(SESSION_COOKIE, "", max_age=0))
    return web.redirect("/login")


# dashboard and SSO --------------------------------------------------------------------------------


@app.get("/dashboard")
def dashboard() -> Response:
    _, account = signed_in()
    notice, is_error = NOTICES.get(web.request.query_value("notice") or "", (None, False))
    usage = container.client_area.usage_so_far(account) if account.enrolled else None
    return web.page(
        "dashboard.html",
        account=account,
        usage=usage,
        notice=notice,
        notice_is_error=is_error,
        **card_on_file(account),
    )


def card_on_file(account: Account) -> dict[str, Any]:
    """What the dashboard and the account page show of the card: nothing when Stripe is not configured."""
    collection = container.collection
    if collection is None or not account.enrolled:
        return {"payments_enabled": False, "card": None, "declined": None}
    card = collection.card_of(account.client_id)
    declined = None
    if card is not None:  # a card known to decline is not one "new invoices are charged to"
        found = collection.declined_on(card, container.billing.invoices_of(account.client_id))
        declined = {"invoice": found[0], "reason": found[1]} if found else None
    return {"payments_enabled": True, "card": card, "declined": declined}


@app.post("/sso")
def sso() -> Response:
    _, account = signed_in()
    web.form()
    if not account.enrolled or account.solus_user_id is None:
        return dashboard_with("not-enrolled")
    try:
        token = container.solus.one_time_login_token(account.solus_user_id)
    except (SolusUnavailable, SolusRejected):
        return dashboard_with("panel-unavailable")
    # The token goes only into the Location header: never logged, never in a page.
    return web.redirect(settings.sso_url_template.replace("{token}", quote(token, safe="")), status=302)


@app.post("/finish")
def finish() -> Response:
    _, account = signed_in()
    web.form()
    if account.enrolled:
        return dashboard_with("enrolled")
    try:
        container.provisioner.provision(account.email, notify_if_later=True)
    except (AlreadyProvisioning, SolusUnavailable, SolusRejected):
        return dashboard_with("setup-pending")
    return dashboard_with("enrolled")


# invoices -----------------------------------------------------------------------------------------


@app.get("/invoices")
def invoices() -> Response:
    _, account = signed_in()
    found = container.billing.invoices_of(account.client_id)
    return web.page("invoices.html", invoices=found, refunded=refunded_of(found), today=today())


@app.get("/invoices/<number>")
def invoice(number: str) -> Response:
    """The invoice page, or its PDF at ``/invoices/<number>.pdf``: to its owner only."""
    _, account = signed_in()
    pdf = number.endswith(".pdf")
    number = number.removesuffix(".pdf")
    found = own_invoice(account, number)
    if pdf:
        return web.download(
            container.invoice_pdf(found, today=today()), f"{found.number}.pdf", "application/pdf"
        )
    notice, _ = NOTICES.get(web.request.query_value("notice") or "", (None, False))
    pay_now = container.collection is not None and found.status is InvoiceStatus.UNPAID
    return web.page(
        "invoice.html",
        invoice=found,
        account=account,
        today=today(),
        pay_now=pay_now,
        notice=notice,
        refunded=refunded_of([found]).get(found.number),
        **cancelled_by(found),
    )


def cancelled_by(invoice: Invoice) -> dict[str, Any]:
    """On a void invoice's page: its credit note (number, date, reason) and the invoice that re-billed its
    month, if any. Two queries of the client's own items, only for a void invoice."""
    if invoice.status is not InvoiceStatus.VOID:
        return {"credit_note": None, "replacement": None}
    billing = container.billing
    notes = [
        n for n in billing.credit_notes(client_id=invoice.client_id) if n.invoice_number == invoice.number
    ]
    replacement = next(
        (
            i
            for i in billing.invoices_of(invoice.client_id)
            if i.period_key == invoice.period_key
            and i.number != invoice.number
            and i.status is not InvoiceStatus.VOID
        ),
        None,
    )
    return {"credit_note": notes[0] if notes else None, "replacement": replacement}


def refunded_of(invoices: list[Invoice]) -> dict[str, Decimal]:
    """What was refunded of each invoice's card payment, by number, for those with a refund: one read per
    invoice paid by card, none without Stripe."""
    collection = container.collection
    if collection is None:
        return {}
    amounts = {i.number: collection.refunded(i) for i in invoices}
    return {number: amount for number, amount in amounts.items() if amount}


def own_invoice(account: Account, number: str) -> Invoice:
    found = container.billing.invoice_of(account.client_id, number) if len(number) <= 64 else None
    if found is None:  # another client's invoice does not exist
        raise HttpError(404, "Invoice not found", "There is no such invoice in your account.")
    return found


def pay_page(account: Account, invoice: Invoice, *, status: int = 200, error: str | None = None) -> Response:
    collection = container.collection
    if collection is None:
        raise HttpError(404, "Page not found", "There is no page at this address.")
    if invoice.status is not InvoiceStatus.UNPAID:
        return web.redirect(f"/invoices/{quote(invoice.number)}")
    card = collection.card_of(account.client_id)
    return web.page("pay.html", status=status, invoice=invoice, card=card, error=error)


@app.get("/invoices/<number>/pay")
def pay_form(number: str) -> Response:
    _, account = signed_in()
    return pay_page(account, own_invoice(account, number))


@app.post("/invoices/<number>/pay")
def pay(number: str) -> Response:
    _, account = signed_in()
    web.form()
    found = own_invoice(account, number)
    if container.collection is None:
        raise HttpError(404, "Page not found", "There is no page at this address.")
    try:
        result = container.collection.pay_now(found)
    except NotPayable as refusal:
        return pay_page(account, found, status=409, error=str(refusal))
    except GatewayError:
        logger.exception("pay now unavailable")
        return web.error(503, "Card payments are unavailable", "Please try again later, or pay by transfer.")
    return paid_or_not(account, found, result.status, result.reason, result)


@app.post("/invoices/<number>/authenticated")
def authenticated(number: str) -> Response:
    _, account = signed_in()
    fields = web.form()
    found = own_invoice(account, number)
    if container.collection is None:
        raise HttpError(404, "Page not found", "There is no page at this address.")
    intent = fields.get("payment_intent", "")
    if not intent.startswith("pi_") or len(intent) > 255:
        return pay_page(account, found, status=400, error="The payment was not confirmed. Please try again.")
    try:
        status = container.collection.after_authentication(found, intent)
    except NotPayable as refusal:
        return pay_page(account, found, status=400, error=str(refusal))
    except GatewayError:
        logger.exception("pay now unavailable")
        return web.error(503, "Card payments are unavailable", "Please try again later, or pay by transfer.")
    return paid_or_not(account, found, status, None, None)


def paid_or_not(account: Account, invoice: Invoice, status: str, reason: str | None, result: Any) -> Response:
    if status == "refunded":
        return web.redirect(f"/invoices/{quote(invoice.number)}?notice=refunded")
    if status == "succeeded":
        return web.redirect(f"/invoices/{quote(invoice.number)}?notice=paid")
    if status == "processing":
        return web.redirect(f"/invoices/{quote(invoice.number)}?notice=processing")
    if status == "requires_action" and result is not None and result.client_secret:
        code, script_hash = script("authenticate.js")
        return web.page(
            "authenticate.html",
            headers=stripe_headers(settings, script_hash),
            invoice=invoice,
            publishable_key=settings.stripe_publishable_key,
            client_secret=result.client_secret,
            payment_intent=result.intent_id,
            stripe_js=settings.stripe_js_url,
            script=code,
        )
    message = (
        f"The payment did not go through: {reason.rstrip('.')}."
        if reason
        else "The payment did not go through."
    )
    return pay_page(account, invoice, status=402, error=message)


# password reset and account -----------------------------------------------------------------------


@app.get("/forgot")
def forgot_form() -> Response:
    return web.page("forgot.html", sent=False, email="")


@app.post("/forgot")
def forgot() -> Response:
    started = time.monotonic()
    email = web.form().get("email", "")
    try:
        container.client_area.forgot(email, source_ip=web.request.source_ip)
    except RateLimited:
        at_least(started, settings.signup_min_response_ms)
        return web.error(429, "Too many attempts", "Too many reset requests. Please try again later.")
    at_least(started, settings.signup_min_response_ms)  # a known address sends mail: the same time either way
    return web.page("forgot.html", sent=True, email=email[:254])


def reset_problem(error: Exception) -> Response:
    if isinstance(error, TokenExpired):
        return web.error(
            410,
            "This link has expired",
            "Reset links work for one hour. Ask for a new one.",
            link={"href": settings.path("/forgot"), "text": "Get a new link"},
        )
    if isinstance(error, TokenUsed):
        return web.error(
            410,
            "This link was already used",
            "Log in with your new password, or ask for a new link.",
            link={"href": settings.path("/login"), "text": "Log in"},
        )
    return web.error(
        400,
        "This link is not valid",
        "Use the newest reset email, or ask for a new link.",
        link={"href": settings.path("/forgot"), "text": "Get a new link"},
    )


@app.get("/reset")
def reset_form() -> Response:
    token = web.request.query_value("token") or ""
    try:
        record = container.client_area.check_reset(token)
    except (TokenInvalid, TokenExpired, TokenUsed) as error:
        return reset_problem(error)
    return web.page("reset.html", token=token, error=None, email=record.email)


@app.post("/reset")
def reset() -> Response:
    fields = web.form()
    token = fields.get("token", "")
    try:
        account = container.client_area.reset(
            token, fields.get("password", ""), source_ip=web.request.source_ip
        )
    except RateLimited:
        return web.error(429, "Too many attempts", "Too many attempts. Please try again later.")
    except (TokenInvalid, TokenExpired, TokenUsed) as error:
        return reset_problem(error)
    except PasswordRejected as error:
        return web.page("reset.html", status=400, token=token, error=error.message)
    # The mailbox's owner is in, even while someone else is locked out guessing at the account.
    web.set_cookie(
        cookie(
            SESSION_COOKIE, container.sessions.start(account.email), max_age=container.sessions.cookie_max_age
        )
    )
    return dashboard_with("password-changed")


@app.get("/account")
def account_page() -> Response:
    _, account = signed_in()
    notice, _ = NOTICES.get(web.request.query_value("notice") or "", (None, False))
    return web.page("account.html", account=account, errors={}, notice=notice, **card_on_file(account))


@app.post("/account/billing")
def change_billing_details() -> Response:
    _, account = signed_in()
    fields = web.form()
    address, tax_id, errors = validate_billing_details(fields)
    if errors:
        return web.page(
            "account.html",
            status=400,
            account=account,
            errors={},
            notice=None,
            billing_errors=errors,
            billing_values={k: fields.get(k, "")[:600] for k in ("billing_address", "tax_id")},
            **card_on_file(account),
        )
    container.accounts.set_billing_details(account.email, address, tax_id)
    return web.redirect("/account?notice=billing-saved")


@app.post("/account/password")
def change_password() -> Response:
    _, account = signed_in()
    fields = web.form()
    try:
        container.client_area.change_password(
            account,
            fields.get("current_password", ""),
            fields.get("new_password", ""),
            source_ip=web.request.source_ip,
            session_id=session_id(),
        )
    except RateLimited:
        return web.error(429, "Too many attempts", "Too many wrong passwords. Please try again later.")
    except PasswordRejected as error:
        return web.page(
            "account.html",
            status=400,
            account=account,
            errors={error.field: error.message},
            notice=None,
            **card_on_file(account),
        )
    return web.redirect("/account?notice=password-changed")


# card on file -------------------------------------------------------------------------------------


def _collection(account: Account) -> Any:
    if container.collection is None or not account.enrolled:
        raise HttpError(404, "Page not found", "There is no page at this address.")
    return container.collection


def card_page(account: Account, *, status: int = 200, error: str | None = None) -> Response:
    collection = _collection(account)
    try:
        secret = collection.start_card_setup(account.client_id, account.email)
    except GatewayError:
        logger.exception("card setup unavailable")
        return web.error(
            503, "Cards are unavailable", "We cannot save cards right now. Please try again later."
        )
    code, script_hash = script("card.js")
    return web.page(
        "card.html",
        status=status,
        headers=stripe_headers(settings, script_hash),
        card=collection.card_of(account.client_id),
        publishable_key=settings.stripe_publishable_key,
        client_secret=secret,
        stripe_js=settings.stripe_js_url,
        script=code,
        error=error,
    )


@app.get("/account/card")
def card_form() -> Response:
    _, account = signed_in()
    return card_page(account)


@app.post("/account/card")
def save_card() -> Response:
    _, account = signed_in()
    fields = web.form()
    collection = _collection(account)
    setup_intent = fields.get("setup_intent", "")
    if not setup_intent.startswith("seti_") or len(setup_intent) > 255:
        return card_page(account, status=400, error="The card was not saved. Please enter it again.")
    try:
        collection.finish_card_setup(account.client_id, setup_intent)
    except CardNotSaved:
        return card_page(account, status=400, error="The card was not saved. Please enter it again.")
    except GatewayError:
        logger.exception("card not saved")
        return web.error(
            503, "Cards are unavailable", "We cannot save cards right now. Please try again later."
        )
    return web.redirect("/account?notice=card-saved")


def remove_card_page(account: Account) -> Response:
    """The question "Remove your card?", asked before the only payment method goes (a page of its own,
    so Back and reload only show it again). With no card left, the account page says so."""
    card = _collection(account).card_of(account.client_id)
    if card is None:
        return web.redirect("/account")
    return web.page("card_remove.html", card=card)


@app.get("/account/card/remove")
def remove_card_form() -> Response:
    _, account = signed_in()
    return remove_card_page(account)


@app.post("/account/card/remove")
def remove_card() -> Response:
    _, account = signed_in()
    fields = web.form()
    if fields.get("confirm") != "yes":  # a form without the confirmation (an old page): ask first
        return remove_card_page(account)
    try:
        _collection(account).remove_card(account.client_id)
    except GatewayError:
        logger.exception("card not removed")
        return web.error(
            503, "Cards are unavailable", "We cannot remove cards right now. Please try again later."
        )
    return web.redirect("/account?notice=card-removed")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # pages carry tokens, Location and cookies
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    with container.solus.deadline(settings.solusvm_page_budget_seconds):  # one budget for the whole page
        return app.resolve(event, context)
