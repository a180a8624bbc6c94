"""POST /sso: a one-time token and a redirect into the SolusVM panel."""

from __future__ import annotations

import requests

from tests.integration.conftest import fault, new_email, sign_up, verify


def _enrolled(browser, stack):
    email = new_email()
    sign_up(browser, email)
    page = verify(browser, stack, email)
    assert page.has("Log in to SolusVM")
    return email, page


def test_sso_redirects_to_the_panel_with_a_one_time_token(browser, stack):
    email, page = _enrolled(browser, stack)
    answer = browser.post("/sso", {}, csrf_from=page)
    assert answer.status == 302
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.location.startswith(f"{stack.emulator.root}/panel/login?token=")
    landing = requests.get(answer.location, timeout=5)
    assert landing.status_code == 200 and f"Logged in as {email}" in landing.text
    assert requests.get(answer.location, timeout=5).status_code == 401, "the token works once"


def test_sso_without_a_session_goes_to_login(new_browser):
    browser = new_browser()
    page = browser.get("/signup")
    answer = browser.post("/sso", {}, csrf_from=page)
    assert answer.status == 303 and answer.location == "/login"


def test_sso_without_csrf_is_refused(browser, stack):
    _enrolled(browser, stack)
    answer = browser.post("/sso", {"csrf_token": "nope" * 10})
    assert answer.status == 403


def test_sso_when_solusvm_is_down_is_the_dashboard_with_a_message(browser, stack):
    _, page = _enrolled(browser, stack)
    fault(stack, mode="status", status=503)
    answer = browser.post("/sso", {}, csrf_from=page)
    assert answer.status == 303 and answer.location == "/dashboard?notice=panel-unavailable"
    dashboard = browser.get(answer.location)
    assert dashboard.status == 200 and dashboard.has("The control panel is unavailable, try again shortly")
