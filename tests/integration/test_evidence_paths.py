"""Paths the IAM evidence (tests/aws_calls.py) must see, each a behaviour of its own: a session in use is
kept alive, a sign-up that loses the race for its address to another attempt is discarded, and the daily
upkeep removes an expired pending account of the earlier model (one account item per sign-up)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from postpay.adapters.tables import AccountItem, SessionItem, TokenItem
from postpay.security import hash_password, token_hash
from tests.integration.billing_helpers import invoke
from tests.integration.conftest import PASSWORD, follow, new_email, sign_up, verify, verify_link


def _session_item(browser) -> SessionItem:
    return SessionItem.get(token_hash(browser.jar["__Host-session"]), consistent_read=True)


def _idle_for(browser, minutes: int) -> datetime:
    """Moves the browser's session's last use ``minutes`` back; returns that moment."""
    before = datetime.now(UTC) - timedelta(minutes=minutes)
    SessionItem(token_hash(browser.jar["__Host-session"])).update(
        actions=[SessionItem.last_seen_at.set(before)]
    )
    return before


def test_a_page_view_after_five_idle_minutes_pushes_the_sessions_expiry(browser, stack):
    # Given a signed-in client whose last page view was six minutes ago
    email = new_email()
    sign_up(browser, email)
    verify(browser, stack, email)
    before = _idle_for(browser, 6)
    # When they open the dashboard
    assert browser.get("/dashboard").status == 200
    # Then the session's last use (and so its idle expiry) moved to now
    assert _session_item(browser).last_seen_at > before + timedelta(minutes=5)


def test_a_used_link_from_its_own_signed_in_browser_keeps_that_session_alive(browser, stack):
    # Given a browser that verified its sign-up (and so is signed in), idle for six minutes
    email = new_email()
    sign_up(browser, email)
    link = verify_link(stack, email)
    token = browser.get(link).field("token")
    verify(browser, stack, email)
    before = _idle_for(browser, 6)
    # When it submits the terms form of the used link again
    form = browser.get("/signup")
    fields = {"token": token, "password": PASSWORD, "accept_tos": "yes", "accept_postpay_terms": "yes"}
    again = follow(browser, browser.post("/verify", fields, csrf_from=form))
    # Then it is told it is signed in already, and its session was touched
    assert again.status == 200, again.body
    assert _session_item(browser).last_seen_at > before + timedelta(minutes=5)


def test_a_sign_up_that_loses_the_race_for_its_address_is_discarded(
    new_browser, stack, functions, monkeypatch
):
    # Given two sign-ups for one address, each with its own link
    email = new_email()
    first, second = new_browser(), new_browser()
    sign_up(first, email)
    first_link = verify_link(stack, email)
    sign_up(second, email, password="another long passphrase")
    first_page = first.get(first_link)
    # And the second verified between the first's check of the address and its transaction (the race of
    # two terms pages submitted together): the check still finds no account
    verify(second, stack, email, password="another long passphrase")
    accounts = functions["verify"].container.accounts
    real, checked = accounts.get_account, []

    def before_the_other_commit(address: str):
        if address == email and not checked:
            checked.append(address)
            return None
        return real(address)

    monkeypatch.setattr(accounts, "get_account", before_the_other_commit)
    # When the first is submitted
    fields = {
        "token": first_page.field("token"),
        "password": PASSWORD,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    answer = follow(first, first.post("/verify", fields, csrf_from=first_page))
    # Then its transaction fails, it is told the address is confirmed, and its attempt is gone
    assert checked and answer.status == 410 and answer.has("already")
    assert TokenItem.count(token_hash(first_link.split("token=")[1])) == 0


def test_the_daily_upkeep_removes_an_expired_pending_account_of_the_earlier_model(stack, functions):
    # Given a pending account item of the earlier model (before sign-up attempts had their own records),
    # expired, with its link
    email = new_email()
    link = f"earlier-{email}"
    gone = int(time.time()) - 60
    AccountItem(
        email,
        client_id=0,
        name="Earlier",
        password_hash=hash_password(PASSWORD),
        status="pending",
        created_at=datetime.now(UTC) - timedelta(days=3),
        verify_token_hash=link,
        expires_at=gone,
    ).save()
    TokenItem(link, purpose="verify", email=email, expires_at=gone).save()
    # When the daily upkeep runs
    result = invoke(
        functions,
        {
            "source": "aws.events",
            "detail-type": "Scheduled Event",
            "time": f"{date.today().isoformat()}T06:00:00Z",
        },
    )
    # Then both are gone
    assert result["upkeep"]["pendingRemoved"] >= 1
    assert AccountItem.count(email) == 0 and TokenItem.count(link) == 0
