"""Verification: terms, acceptance records, SolusVM provisioning, failures and retries."""

from __future__ import annotations

import logging
import time

import requests

from postpay.adapters.tables import AcceptanceItem, AccountItem, TokenItem
from postpay.security import token_hash
from tests.integration.conftest import (
    PASSWORD,
    emulator_users,
    fault,
    follow,
    new_email,
    sign_up,
    verify,
    verify_link,
)


def _token(stack, email):
    return verify_link(stack, email).split("token=")[1]


def test_terms_page_lists_both_documents_with_their_versions(browser, stack):
    email = new_email()
    sign_up(browser, email)
    page = browser.get(verify_link(stack, email))
    assert page.status == 200
    assert page.has('name="accept_tos"') and page.has('name="accept_postpay_terms"')
    assert (page.has("Terms of Service") and page.has("Post-Pay Terms &amp; Conditions")) or page.has(
        "Post-Pay Terms & Conditions"
    )
    assert page.has("version 2026-01")


def test_without_postpay_terms_configured_only_the_tos_is_asked(browser, stack, settings_override):
    settings_override(postpay_terms=None)
    email = new_email()
    sign_up(browser, email)
    page = browser.get(verify_link(stack, email))
    assert page.has('name="accept_tos"') and not page.has('name="accept_postpay_terms"')
    fields = {"token": page.field("token"), "password": PASSWORD, "accept_tos": "yes"}
    done = browser.post("/verify", fields, csrf_from=page)
    assert follow(browser, done).has("Log in to SolusVM")
    client_id = AccountItem.get(email).client_id
    assert [a.document for a in AcceptanceItem.query(client_id)] == ["tos"]


def test_accepting_enrolls_the_client_and_logs_them_in(browser, stack):
    # Given
    email = new_email()
    sign_up(browser, email)
    # When
    terms = browser.get(verify_link(stack, email))
    fields = {
        "token": terms.field("token"),
        "password": PASSWORD,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    answer = browser.post("/verify", fields, csrf_from=terms)
    # Then the answer logs them in and redirects (post-redirect-get) to the dashboard that says so
    assert (answer.status, answer.location) == (303, "/dashboard?notice=welcome")
    page = browser.get(answer.location)
    assert page.status == 200 and page.has("Your account is ready")
    assert page.has("Log in to SolusVM") and page.has('action="/sso"')
    session_cookie = next(c for c in answer.cookies if c.startswith("__Host-session="))
    assert "HttpOnly" in session_cookie and "Secure" in session_cookie and "SameSite=Lax" in session_cookie
    account = AccountItem.get(email)
    assert account.status == "enrolled" and account.expires_at is None
    users = emulator_users(stack, email)
    assert len(users) == 1
    assert users[0]["billing_user_id"] == account.client_id
    assert users[0]["status"] == "active" and users[0]["limit_group_id"] == 1
    assert account.solus_user_id == users[0]["id"]
    acceptances = {a.document: a for a in AcceptanceItem.query(account.client_id)}
    assert set(acceptances) == {"tos", "postpay"}
    assert acceptances["tos"].version == "2026-01"
    assert acceptances["tos"].source_ip == browser.source_ip
    assert acceptances["tos"].user_agent == browser.user_agent


def test_missing_checkbox_is_refused_and_nothing_is_recorded(browser, stack):
    email = new_email()
    sign_up(browser, email)
    page = verify(browser, stack, email, accept_tos="yes")
    assert page.status == 400 and page.has("Please accept: Post-Pay Terms")
    assert AccountItem.count(email) == 0, "no account before the terms are accepted"
    assert browser.get(verify_link(stack, email)).status == 200, "the link still works"


def test_unknown_link_is_400_with_a_way_to_get_a_new_one(browser):
    page = browser.get("/verify?token=not-a-real-token")
    assert page.status == 400 and page.has("Get a new link")
    assert browser.get("/verify").status == 400


def test_expired_link_is_410(browser, stack):
    email = new_email()
    sign_up(browser, email)
    token = _token(stack, email)
    TokenItem(token_hash(token)).update(actions=[TokenItem.expires_at.set(int(time.time()) - 1)])
    page = browser.get(f"/verify?token={token}")
    assert page.status == 410 and page.has("expired") and page.has("Get a new link")


def test_used_link_from_another_browser_is_410(browser, new_browser, stack):
    email = new_email()
    sign_up(browser, email)
    verify(browser, stack, email)
    other = new_browser()
    page = other.get(verify_link(stack, email))
    assert page.status == 410 and page.has("already used")


def test_back_to_a_used_link_in_the_browser_it_signed_in_goes_to_the_dashboard(browser, new_browser, stack):
    # Given a client who verified (and so is signed in), and another signed-in client
    email = new_email()
    sign_up(browser, email)
    link = verify_link(stack, email)
    assert verify(browser, stack, email).has("Log in to SolusVM")
    other_email = new_email()
    other = new_browser()
    sign_up(other, other_email)
    verify(other, stack, other_email)
    # When the client presses Back to the link (or opens the email's link again)
    back = browser.get(link)
    # Then they are sent to their dashboard, not told the link was used
    assert back.status == 303 and back.location == "/dashboard"
    dashboard = browser.get(back.location)
    assert dashboard.has(email) and dashboard.has("Log in to SolusVM")
    # And for anyone else the link stays used: another client signed in, or this browser once logged out
    refused = other.get(link)
    assert refused.status == 410 and refused.has("already used") and not refused.location
    dashboard = browser.get("/dashboard")
    browser.post("/logout", {}, csrf_from=dashboard)
    logged_out = browser.get(link)
    assert logged_out.status == 410 and logged_out.has("already used")


def test_retry_from_the_same_browser_shows_the_outcome_again(browser, stack):
    email = new_email()
    sign_up(browser, email)
    page = browser.get(verify_link(stack, email))
    fields = {
        "token": page.field("token"),
        "password": PASSWORD,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    first = follow(browser, browser.post("/verify", fields, csrf_from=page))
    second_answer = browser.post("/verify", fields, csrf_from=page)
    second = follow(browser, second_answer)
    assert first.has("Log in to SolusVM") and second.has("Log in to SolusVM")
    assert not any(c.startswith("__Host-session=") for c in second_answer.cookies), (
        "no new session from a used link"
    )
    assert len(emulator_users(stack, email)) == 1


def test_solusvm_5xx_leaves_the_account_verified_and_automation_finishes_it(browser, stack, functions):
    # Given SolusVM answers 503 to everything
    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="status", status=503)
    # When
    page = verify(browser, stack, email)
    # Then the client sees a calm page, not an error
    assert page.status == 200 and page.has("We are finishing your setup")
    account = AccountItem.get(email)
    assert (
        account.status == "verified" and "503" in account.provisioning_error and account.notify_when_enrolled
    )
    assert not emulator_users(stack, email)
    # When SolusVM is back and the daily automation retries
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)
    summary = functions["verify"].container.provisioner.retry_pending()
    # Then the account is enrolled and the client is emailed
    assert email not in summary.failed
    assert AccountItem.get(email).status == "enrolled"
    assert len(emulator_users(stack, email)) == 1
    assert stack.mails_to(email)[-1].subject == "Your account is ready"


def test_solusvm_hanging_times_out_quickly_and_calmly(browser, stack):
    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="hang", seconds=30, path="users")
    started = time.monotonic()
    page = verify(browser, stack, email)
    assert page.status == 200 and page.has("We are finishing your setup")
    # the configured timeout (1 s in tests) bounds the wait, not the 30 s hang; a margin for a loaded machine
    # (a bound of 4 s failed once with the 2 cores at a load of 9)
    assert time.monotonic() - started < 15, "the page waited for the hanging SolusVM"


def test_solusvm_down_is_handled(browser, stack, functions, monkeypatch):
    email = new_email()
    sign_up(browser, email)
    solus = functions["verify"].container.solus
    monkeypatch.setattr(solus, "base_url", "http://127.0.0.1:9/api/v1/")
    page = verify(browser, stack, email)
    assert page.status == 200 and page.has("We are finishing your setup")
    assert AccountItem.get(email).status == "verified"


def test_solusvm_4xx_is_logged_with_its_message(browser, stack):
    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="status", status=422, path="users", method="POST")
    records = _capture_log()
    page = verify(browser, stack, email)
    assert page.status == 200 and page.has("We are finishing your setup")
    refused = [r for r in records if r.getMessage() == "SolusVM refused a request"]
    assert refused and refused[0].status == 422 and refused[0].solus_message
    account = AccountItem.get(email)
    assert account.status == "verified" and "422" in account.provisioning_error


def _capture_log() -> list[logging.LogRecord]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.getLogger("postpay").addHandler(Keep(level=logging.WARNING))
    return records


def test_existing_solusvm_user_is_relinked_not_duplicated(browser, stack):
    email = new_email()
    created = requests.post(
        f"{stack.emulator.url}users",
        json={"email": email.upper(), "password": "x" * 12, "status": "active"},
        headers={"Authorization": "Bearer local-solusvm-api-token"},
        timeout=5,
    ).json()["data"]
    sign_up(browser, email)
    assert verify(browser, stack, email).has("Log in to SolusVM")
    users = emulator_users(stack, email)
    assert [u["id"] for u in users] == [created["id"]]
    assert users[0]["billing_user_id"] == AccountItem.get(email).client_id


def test_created_user_whose_answer_was_lost_is_relinked_on_retry(browser, stack, functions):
    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="after", status=502, path="users", method="POST", count=1)
    assert verify(browser, stack, email).has("We are finishing your setup")
    assert len(emulator_users(stack, email)) == 1, "SolusVM created it; we did not hear back"
    functions["verify"].container.provisioner.retry_pending()
    assert AccountItem.get(email).status == "enrolled"
    assert len(emulator_users(stack, email)) == 1


def test_a_slow_solusvm_never_holds_the_page_past_its_budget(browser, stack, settings_override, monkeypatch):
    # Given SolusVM answers every call with a 504 after 0.8 s (under the 1 s timeout, so each is retried:
    # three attempts of one call alone take 2.4 s), and the page's SolusVM budget is 1 s
    settings_override(solusvm_page_budget_seconds=1.0)
    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="hang", seconds=0.8)
    calls: list[str] = []
    send = requests.Session.send

    def counting(session, request, **kwargs):
        if request.url.startswith(stack.emulator.root):
            calls.append(request.url)
        return send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", counting)
    # When the client accepts the terms
    started = time.monotonic()
    page = verify(browser, stack, email)
    elapsed = time.monotonic() - started
    # Then the page stops asking SolusVM once its budget is spent: at most the attempt under way when it
    # ran out and one more, short of the three a retried call makes (counted, not timed: a loaded machine
    # adds seconds of the page's own work), and says setup is being finished
    assert page.status == 200 and page.has("We are finishing your setup")
    assert 1 <= len(calls) <= 2, (calls, elapsed)
