"""The account belongs to whoever proves the address *and* the password chosen at that sign-up.

Issue #8, findings 1-3, end to end through the handlers: a sign-up nobody verified cannot log in, a
second sign-up never replaces the first one's password, and a used link never opens a session."""

from __future__ import annotations

import re

from postpay.adapters.sessions_store import SessionsStore
from postpay.adapters.tables import AccountItem, SessionItem
from postpay.security import new_token, token_hash
from tests.integration.conftest import PASSWORD, follow, new_email, sign_up, verify_link

OWNER_PASSWORD = "owner chose this passphrase"
ATTACKER_PASSWORD = "attacker typed this one"


def _links(stack, email: str) -> list[str]:
    mails = [m for m in stack.mails_to(email) if m.subject == "Confirm your email address"]
    return [re.search(r'href="([^"]+/verify\?token=[^"]+)"', m.html).group(1) for m in mails]


def _log_in(browser, email: str, password: str):
    form = browser.get("/login")
    return browser.post("/login", {"email": email, "password": password}, csrf_from=form)


def _accept(browser, link: str, password: str):
    page = browser.get(link)
    assert page.status == 200, page.body
    fields = {
        "token": page.field("token"),
        "password": password,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    return follow(browser, browser.post("/verify", fields, csrf_from=page))  # accepted: 303 to the dashboard


def _has_session(page) -> bool:
    return any(c.startswith("__Host-session=") and "Max-Age=0" not in c for c in page.cookies)


def test_a_sign_up_nobody_verified_cannot_log_in_nor_reach_the_owners_panel(new_browser, stack):
    # Given someone signs up with an address they do not own
    victim = new_email()
    attacker = new_browser()
    sign_up(attacker, victim, password=ATTACKER_PASSWORD)
    # When they try to log in with the password they chose
    answer = _log_in(attacker, victim, ATTACKER_PASSWORD)
    # Then there is no account to log in to
    assert answer.status == 401 and answer.has("Email or password is incorrect.")
    assert "__Host-session" not in attacker.jar
    # And when the owner signs up and verifies, the attacker still has nothing
    owner = new_browser()
    sign_up(owner, victim, password=OWNER_PASSWORD)
    assert _accept(owner, _links(stack, victim)[-1], OWNER_PASSWORD).has("Log in to SolusVM")
    assert attacker.get("/dashboard").location == "/login"
    page = attacker.get("/signup")
    assert attacker.post("/sso", {}, csrf_from=page).location == "/login"
    assert _log_in(new_browser(), victim, ATTACKER_PASSWORD).status == 401


def test_verification_ends_every_session_already_open_for_the_address(new_browser, stack, functions):
    # Given a session for the address exists before its owner verifies it (as a pending account of the
    # earlier model could open one)
    victim = new_email()
    planted = new_token()
    store: SessionsStore = functions["sso"].container.session_store
    sessions = functions["sso"].container.sessions
    store.create_session(
        token_hash(planted),
        email=victim,
        now=sessions.clock.now(),
        idle=sessions.idle,
        absolute=sessions.absolute,
    )
    # When the owner signs up and verifies
    owner = new_browser()
    sign_up(owner, victim, password=OWNER_PASSWORD)
    assert _accept(owner, _links(stack, victim)[-1], OWNER_PASSWORD).has("Log in to SolusVM")
    # Then the earlier session is gone, and only the owner's own remains
    intruder = new_browser()
    intruder.jar["__Host-session"] = planted
    assert intruder.get("/dashboard").location == "/login"
    assert SessionItem.by_email.count(victim) == 1
    assert owner.get("/dashboard").has("Log in to SolusVM")


def test_a_second_sign_up_never_replaces_the_first_ones_password(new_browser, stack):
    # Given the owner signs up, then someone else signs up with the same address and another password
    victim = new_email()
    owner = new_browser()
    sign_up(owner, victim, password=OWNER_PASSWORD)
    sign_up(new_browser(), victim, password=ATTACKER_PASSWORD)
    owners_link, attackers_link = _links(stack, victim)
    # When the owner follows the newest link (the attacker's attempt) with their own password
    wrong = _accept(owner, attackers_link, OWNER_PASSWORD)
    # Then it is refused with a clear message, and nothing is enrolled
    assert wrong.status == 400 and wrong.has("This is not the password you chose when you signed up")
    assert AccountItem.count(victim) == 0 and not _has_session(wrong)
    # When the owner follows their own link with their password
    assert _accept(owner, owners_link, OWNER_PASSWORD).has("Log in to SolusVM")
    # Then the account has the owner's password, never the attacker's
    assert _log_in(new_browser(), victim, ATTACKER_PASSWORD).status == 401
    assert _log_in(new_browser(), victim, OWNER_PASSWORD).status == 303
    # And the attacker's attempt is void: "already confirmed: log in", no session
    late = new_browser().get(attackers_link)
    assert late.status == 410 and late.has("already used") and not _has_session(late)
    hash_before = AccountItem.get(victim).password_hash
    form = new_browser()
    page = form.get("/signup")
    token = attackers_link.split("token=")[1]
    fields = {
        "token": token,
        "password": ATTACKER_PASSWORD,
        "accept_tos": "yes",
        "accept_postpay_terms": "yes",
    }
    refused = form.post("/verify", fields, csrf_from=page)
    assert refused.status == 410 and not _has_session(refused)
    assert AccountItem.get(victim).password_hash == hash_before


def test_wrong_passwords_on_the_terms_page_count_against_the_guessing_limits(new_browser, stack):
    victim = new_email()
    sign_up(new_browser(), victim, password=ATTACKER_PASSWORD)
    [link] = _links(stack, victim)
    guesser = new_browser()
    for _ in range(10):
        assert _accept(guesser, link, "a guess at the password").status == 400
    blocked = _accept(new_browser(), link, ATTACKER_PASSWORD)
    assert blocked.status == 429 and AccountItem.count(victim) == 0


def _used_link_opens_nothing(browser, link: str, token: str) -> None:
    again = browser.get(link)
    assert again.status == 410 and again.has("already used") and again.has("Log in")
    assert not _has_session(again)
    form = browser.get("/signup")
    fields = {"token": token, "password": PASSWORD, "accept_tos": "yes", "accept_postpay_terms": "yes"}
    resubmit = browser.post("/verify", fields, csrf_from=form)
    assert resubmit.status == 410 and not _has_session(resubmit)
    assert browser.get("/dashboard").location == "/login"


def test_a_used_link_never_logs_the_browser_in_again(browser, new_browser, stack):
    # Given an enrolled account, verified in this browser
    email = new_email()
    sign_up(browser, email)
    link = verify_link(stack, email)
    page = browser.get(link)
    token = page.field("token")
    assert _accept(browser, link, PASSWORD).has("Log in to SolusVM")
    # After log-out, the same browser (same CSRF cookie) cannot get back in through the link
    dashboard = browser.get("/dashboard")
    browser.post("/logout", {}, csrf_from=dashboard)
    _used_link_opens_nothing(browser, link, token)
    # Nor after a password change (from another session) ...
    other = new_browser()
    assert _log_in(other, email, PASSWORD).status == 303
    account = other.get("/account")
    changed = other.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "a second good passphrase"},
        csrf_from=account,
    )
    assert changed.status == 303
    _used_link_opens_nothing(browser, link, token)
    # ... nor after a reset
    other.submit("/forgot", "/forgot", {"email": email})
    [mail] = [m for m in stack.mails_to(email) if m.subject == "Reset your password"]
    reset_link = re.search(r'href="([^"]+/reset\?token=[^"]+)"', mail.html).group(1)
    form = other.get(reset_link)
    assert (
        other.post(
            "/reset", {"token": form.field("token"), "password": "a third good passphrase"}, csrf_from=form
        ).status
        == 303
    )
    _used_link_opens_nothing(browser, link, token)
