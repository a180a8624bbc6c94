"""Nothing secret reaches X-Ray or the logs: a whole journey recorded as the tracer would send it.

The X-Ray SDK is switched on in-process (Powertools switches it off outside Lambda) with an emitter that
keeps every segment document instead of sending it to the daemon, and botocore and requests are patched as
the Lambda tracer patches them. Issue #8, finding 4."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import patch, xray_recorder
from aws_xray_sdk.core.context import Context

from local.stack import SOLUSVM_TOKEN
from tests.browser import Browser
from tests.integration.conftest import FUNCTIONS, PASSWORD, follow, new_email, random_ip, sign_up, verify_link


class KeepingEmitter:
    """Stands in for the UDP emitter: every segment and subsegment document, as it would be sent."""

    def __init__(self) -> None:
        self.documents: list[str] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(entity.serialize())

    def set_daemon_address(self, address: str | None) -> None:
        pass

    ip, port = "127.0.0.1", 2000


@pytest.fixture
def xray() -> Iterator[KeepingEmitter]:
    from postpay.observability import tracer

    # Powertools' Tracer switches the X-Ray SDK off when it is built outside Lambda, and the product builds
    # it on its first invocation: built here first, the SDK is switched on after it (the test alone failed)
    tracer.tracer  # noqa: B018
    emitter = KeepingEmitter()
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(
        emitter=emitter,
        context=Context(),
        sampling=False,
        streaming_threshold=0,
        context_missing="IGNORE_ERROR",
    )
    patch(("botocore", "requests"))
    try:
        yield emitter
    finally:
        global_sdk_config.set_sdk_enabled(False)


def traced(handler: Any) -> Any:
    """One segment per invocation, as Lambda opens one around every call of the handler."""

    def invoke(event: dict, context: Any) -> dict:
        xray_recorder.begin_segment("postpay-test")
        try:
            return handler(event, context)
        finally:
            xray_recorder.end_segment()

    return invoke


def test_a_whole_journey_puts_no_secret_in_traces_or_logs(xray, functions, stack, capfd, caplog):
    caplog.set_level("INFO", logger="postpay")  # what the functions log (POWERTOOLS_LOG_LEVEL=INFO)
    browser = Browser({name: traced(functions[name].handler) for name in FUNCTIONS}, source_ip=random_ip())
    secrets: set[str] = {SOLUSVM_TOKEN, PASSWORD}
    sessions: set[str] = set()

    def remember_session() -> None:
        if browser.jar.get("__Host-session"):
            sessions.add(browser.jar["__Host-session"])

    # sign up, verify, the panel through SSO
    email = new_email()
    sign_up(browser, email)
    link = verify_link(stack, email)
    secrets.add(link.split("token=")[1])
    terms = browser.get(link)
    fields = {
        "token": terms.field("token"),
        "password": PASSWORD,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    assert follow(browser, browser.post("/verify", fields, csrf_from=terms)).has("Log in to SolusVM")
    remember_session()
    dashboard = browser.get("/dashboard")
    sso = browser.post("/sso", {}, csrf_from=dashboard)
    assert sso.status == 302
    secrets.add(sso.location.split("token=")[1])
    # log out, a wrong password, log in again, change the password
    browser.post("/logout", {}, csrf_from=dashboard)
    form = browser.get("/login")
    assert (
        browser.post("/login", {"email": email, "password": "wrong password guess"}, csrf_from=form).status
        == 401
    )
    assert browser.post("/login", {"email": email, "password": PASSWORD}, csrf_from=form).status == 303
    remember_session()
    account = browser.get("/account")
    second = "a second fine passphrase"
    secrets.add(second)
    changed = browser.post(
        "/account/password", {"current_password": PASSWORD, "new_password": second}, csrf_from=account
    )
    assert changed.status == 303
    # a password reset by email
    browser.submit("/forgot", "/forgot", {"email": email})
    [mail] = [m for m in stack.mails_to(email) if m.subject == "Reset your password"]
    reset_link = re.search(r'href="([^"]+/reset\?token=[^"]+)"', mail.html).group(1)
    secrets.add(reset_link.split("token=")[1])
    reset_form = browser.get(reset_link)
    third = "a third fine passphrase"
    secrets.add(third)
    done = browser.post(
        "/reset", {"token": reset_form.field("token"), "password": third}, csrf_from=reset_form
    )
    assert done.status == 303
    remember_session()
    secrets |= sessions | {browser.jar["__Host-csrf"]}

    # The tracer did record the journey: handler subsegments, DynamoDB, SES and SolusVM calls
    traces = "\n".join(xray.documents)
    assert "## handler" in traces and '"dynamodb"' in traces and "/api/v1/users/" in traces
    logs = (
        capfd.readouterr().out
        + "\n"
        + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("postpay"))
    )
    assert "email verified" in logs
    # and nothing secret is in what it would have sent, nor in the logs
    assert len(sessions) >= 3
    for secret in secrets:
        assert secret not in traces, f"a secret reached X-Ray: {secret[:6]}…"
        assert secret not in logs, f"a secret reached the logs: {secret[:6]}…"
