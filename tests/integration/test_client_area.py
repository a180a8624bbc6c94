"""The client area: log-in, dashboard panels, invoices, password reset, account."""

from __future__ import annotations

import re
import time

import requests

from postpay.adapters.tables import AccountItem, SessionItem, TokenItem
from postpay.security import token_hash, verify_password
from tests.integration.billing_helpers import drain, enrolled_account, invoke
from tests.integration.conftest import fault, new_email, sign_up, verify
from tests.integration.test_invoicing import OCTOBER_SERVERS

PASSWORD = "a long enough passphrase"


def enrolled(browser, stack):
    email = new_email()
    sign_up(browser, email, password=PASSWORD)
    assert verify(browser, stack, email).has("Log in to SolusVM")
    return email


def log_in(browser, email, password=PASSWORD):
    form = browser.get("/login")
    return browser.post("/login", {"email": email, "password": password}, csrf_from=form)


def test_log_in_rotates_the_session_and_opens_the_dashboard(browser, new_browser, stack):
    email = enrolled(browser, stack)
    other = new_browser()
    other.jar["__Host-session"] = "planted-session-id-from-an-attacker-0123456789"
    answer = log_in(other, email)
    assert answer.status == 303 and answer.location == "/dashboard"
    assert other.jar["__Host-session"] != "planted-session-id-from-an-attacker-0123456789"
    page = other.get("/dashboard")
    assert page.status == 200 and page.has("Log in to SolusVM") and page.has(email)
    assert page.has('id="enrolled-panel"') and not page.has('id="not-enrolled-panel"')


def test_wrong_password_and_unknown_email_get_the_same_401(browser, new_browser, stack):
    email = enrolled(browser, stack)
    wrong = log_in(new_browser(), email, "not the password at all")
    unknown = log_in(new_browser(), new_email(), "not the password at all")
    assert wrong.status == unknown.status == 401
    assert wrong.has("Email or password is incorrect.") and unknown.has("Email or password is incorrect.")


def test_failed_logins_are_rate_limited_per_account(browser, new_browser, stack):
    email = enrolled(browser, stack)
    for _ in range(10):
        assert log_in(new_browser(), email, "wrong password here").status == 401
    blocked = log_in(new_browser(), email)  # even the right password, from anywhere
    assert blocked.status == 429 and blocked.has("try again later")


def test_failed_logins_are_rate_limited_per_source_ip(new_browser):
    attacker = new_browser(source_ip="198.51.100.99")
    for _ in range(50):
        assert log_in(attacker, new_email(), "wrong password here").status == 401
    assert log_in(attacker, new_email(), "wrong password here").status == 429


def test_pages_need_a_session(new_browser):
    browser = new_browser()
    for path in ("/dashboard", "/invoices", "/invoices/INV-000001", "/account"):
        answer = browser.get(path)
        assert answer.status == 303 and answer.location == "/login", path


def test_an_expired_session_is_refused(browser, stack):
    email = enrolled(browser, stack)
    [item] = list(SessionItem.by_email.query(email))
    SessionItem(item.session_hash).update(actions=[SessionItem.expires_at.set(int(time.time()) - 1)])
    assert browser.get("/dashboard").location == "/login"


def test_log_out_ends_the_session_server_side(browser, stack):
    email = enrolled(browser, stack)
    stolen = dict(browser.jar)
    page = browser.get("/dashboard")
    assert browser.post("/logout", {}, csrf_from=page).location == "/login"
    assert SessionItem.by_email.count(email) == 0
    browser.jar = stolen  # a copy of the old cookie no longer works
    assert browser.get("/dashboard").location == "/login"


def test_not_enrolled_panel_offers_the_way_forward(browser, stack):
    email = new_email()
    sign_up(browser, email, password=PASSWORD)
    # a sign-up never verified is no account: it cannot log in
    refused = log_in(browser, email)
    assert refused.status == 401 and refused.has("Email or password is incorrect.")
    # verified while SolusVM was down: finish setup
    fault(stack, mode="status", status=503)
    assert verify(browser, stack, email).has("We are finishing your setup")
    dashboard = browser.get("/dashboard")
    assert dashboard.has('id="not-enrolled-panel"') and dashboard.has("Finish setup")
    assert dashboard.has('href="/"')
    assert browser.post("/finish", {}, csrf_from=dashboard).location == "/dashboard?notice=setup-pending"
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)
    assert browser.post("/finish", {}, csrf_from=dashboard).location == "/dashboard?notice=enrolled"
    assert browser.get("/dashboard").has("Log in to SolusVM")


def test_dashboard_shows_usage_so_far_and_survives_solusvm_down(browser, stack, functions):
    email = enrolled(browser, stack)
    page = browser.get("/dashboard")
    assert re.search(r"<strong>[\d,]+</strong> tokens since \d{4}-\d{2}-01", page.body)
    functions["sso"].container.client_area._usage_cache.clear()
    fault(stack, mode="status", status=503)
    page = browser.get("/dashboard")
    assert page.status == 200 and page.has("usage so far is unavailable")
    assert AccountItem.get(email).status == "enrolled"


def test_a_slow_solusvm_never_holds_the_dashboard_or_sso_past_the_page_budget(
    browser, stack, functions, settings_override
):
    # Given an enrolled client, and SolusVM answering every call with a 504 after 0.8 s (under the 1 s
    # timeout, so each idempotent call is retried: 3.3 s for one call without a budget)
    email = enrolled(browser, stack)
    settings_override(solusvm_page_budget_seconds=2.0)
    functions["sso"].container.client_area._usage_cache.clear()
    fault(stack, mode="hang", seconds=0.8)
    # When they open the dashboard
    started = time.monotonic()
    dashboard = browser.get("/dashboard")
    # Then it answers within the budget (plus its own work) and says usage is unavailable
    assert time.monotonic() - started < 2.6
    assert dashboard.status == 200 and dashboard.has("usage so far is unavailable")
    # And asking for the panel answers within the budget too, with "unavailable"
    started = time.monotonic()
    sso = browser.post("/sso", {}, csrf_from=dashboard)
    assert time.monotonic() - started < 2.6
    assert sso.location == "/dashboard?notice=panel-unavailable"
    assert AccountItem.get(email).status == "enrolled"


def test_invoices_are_listed_and_shown_but_only_to_their_owner(stack, functions, worker, new_browser):
    # Given two clients with an October invoice each
    owner = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    other = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    from postpay.security import hash_password

    for item in (owner, other):
        item.update(actions=[AccountItem.password_hash.set(hash_password(PASSWORD))])
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    browser = new_browser()
    assert log_in(browser, owner.email).status == 303
    listing = browser.get("/invoices")
    [number] = re.findall(r'href="/invoices/(INV-\d+)"', listing.body)
    assert listing.has("October 2022") and listing.has("8.19 USD") and listing.has("unpaid")
    detail = browser.get(f"/invoices/{number}")
    assert detail.status == 200
    assert (
        detail.has("web-1")
        and detail.has("batch-1 (deleted)")
        and detail.has("5,000")
        and detail.has("3,192")
    )
    assert detail.has("Subtotal") and detail.has("8.19 USD")
    # When the owner asks for the other client's invoice, it does not exist for them
    from postpay.adapters.tables import InvoiceItem

    other_number = InvoiceItem.get(f"{other.client_id}#2022-10").number
    assert browser.get(f"/invoices/{other_number}").status == 404
    assert browser.get("/invoices/INV-999999").status == 404


def test_password_reset_by_email(browser, new_browser, stack):
    email = enrolled(browser, stack)
    stranger = new_browser()
    # the same answer whether the email exists or not
    known = stranger.submit("/forgot", "/forgot", {"email": email})
    unknown = stranger.submit("/forgot", "/forgot", {"email": new_email()})
    assert known.status == unknown.status == 200 and known.has("If an account uses")
    [mail] = [m for m in stack.mails_to(email) if m.subject == "Reset your password"]
    link = re.search(r'href="([^"]+/reset\?token=[^"]+)"', mail.html).group(1)
    form = stranger.get(link)
    assert form.status == 200
    # a weak password is refused; a good one works, ends every other session and signs this browser in
    weak = stranger.post("/reset", {"token": form.field("token"), "password": "1234567890"}, csrf_from=form)
    assert weak.status == 400 and weak.has("too easy to guess")
    done = stranger.post(
        "/reset", {"token": form.field("token"), "password": "a brand new passphrase"}, csrf_from=form
    )
    assert done.status == 303 and done.location == "/dashboard?notice=password-changed"
    assert stranger.get(done.location).has("Your password is changed")
    assert browser.get("/dashboard").location == "/login", "the old session ended"
    assert log_in(new_browser(), email, PASSWORD).status == 401
    assert log_in(new_browser(), email, "a brand new passphrase").status == 303
    assert stranger.get(link).status == 410, "single use"


def test_expired_reset_link_is_410(browser, stack):
    email = enrolled(browser, stack)
    browser.submit("/forgot", "/forgot", {"email": email})
    [mail] = [m for m in stack.mails_to(email) if m.subject == "Reset your password"]
    token = re.search(r"token=([\w-]+)", mail.html).group(1)
    TokenItem(token_hash(token)).update(actions=[TokenItem.expires_at.set(int(time.time()) - 1)])
    assert browser.get(f"/reset?token={token}").status == 410
    assert browser.get("/reset?token=nope").status == 400


def test_account_page_and_password_change(browser, stack):
    email = enrolled(browser, stack)
    page = browser.get("/account")
    assert page.has("Ada Lovelace") and page.has("Analytical Engines") and page.has(email)
    wrong = browser.post(
        "/account/password",
        {"current_password": "nope nope nope", "new_password": "another fine passphrase"},
        csrf_from=page,
    )
    assert wrong.status == 400 and wrong.has("current password is not correct")
    ok = browser.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "another fine passphrase"},
        csrf_from=page,
    )
    assert ok.location == "/account?notice=password-changed"


def test_client_area_forms_need_csrf(browser, stack):
    enrolled(browser, stack)
    for path in ("/logout", "/sso", "/account/password", "/finish"):
        assert browser.post(path, {"csrf_token": "forged" * 8}).status == 403, path


def test_forgot_takes_the_same_time_for_known_and_unknown_addresses(
    browser, new_browser, stack, settings_override
):
    # Given a known address (its branch writes a link and sends mail) and an unknown one
    settings_override(signup_min_response_ms=600)
    email = enrolled(browser, stack)
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(2):
        for label, address in (("known", email), ("unknown", new_email())):
            stranger = new_browser()
            form = stranger.get("/forgot")
            started = time.monotonic()
            assert stranger.post("/forgot", {"email": address}, csrf_from=form).status == 200
            timings[label].append(time.monotonic() - started)
    # Then both are padded to the floor, and the difference is noise
    assert min(min(t) for t in timings.values()) >= 0.6, timings
    assert abs(sum(timings["known"]) - sum(timings["unknown"])) / 2 < 0.1, timings


def test_log_in_takes_the_same_time_whichever_way_it_fails_or_succeeds(
    browser, new_browser, stack, settings_override
):
    settings_override(signup_min_response_ms=600)
    email = enrolled(browser, stack)
    timings = {}
    for label, address, password in (
        ("unknown", new_email(), PASSWORD),
        ("wrong", email, "not the password at all"),
        ("right", email, PASSWORD),
    ):
        other = new_browser()
        form = other.get("/login")
        started = time.monotonic()
        other.post("/login", {"email": address, "password": password}, csrf_from=form)
        timings[label] = time.monotonic() - started
    assert min(timings.values()) >= 0.6 and max(timings.values()) - min(timings.values()) < 0.15, timings


def test_password_change_ends_every_other_session(browser, new_browser, stack):
    # Given the client is logged in on two devices
    email = enrolled(browser, stack)
    laptop = new_browser()
    assert log_in(laptop, email).status == 303
    # When they change the password on one
    page = browser.get("/account")
    changed = browser.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "another fine passphrase"},
        csrf_from=page,
    )
    # Then the other session ends and this one stays
    assert changed.location == "/account?notice=password-changed"
    assert laptop.get("/dashboard").location == "/login"
    assert browser.get("/account?notice=password-changed").has("Every other session is logged out")
    assert SessionItem.by_email.count(email) == 1


def test_guessing_the_current_password_is_limited(browser, new_browser, stack):
    # Given a session someone else got hold of
    email = enrolled(browser, stack)
    page = browser.get("/account")
    # When they guess the current password ten times
    for attempt in range(10):
        wrong = browser.post(
            "/account/password",
            {"current_password": f"guess number {attempt}", "new_password": "another fine passphrase"},
            csrf_from=page,
        )
        assert wrong.status == 400
    # Then even the right one is refused for now, and the password is unchanged
    right = browser.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "another fine passphrase"},
        csrf_from=page,
    )
    assert right.status == 429 and right.has("try again later")
    assert verify_password(PASSWORD, AccountItem.get(email).password_hash), "unchanged"


def test_a_reset_link_lets_the_owner_in_while_their_account_is_hammered(browser, new_browser, stack):
    # Given someone fails to log in to the account until it is locked
    email = enrolled(browser, stack)
    for _ in range(10):
        assert log_in(new_browser(), email, "wrong password here").status == 401
    assert log_in(new_browser(), email).status == 429
    # When the owner resets the password by email
    owner = new_browser()
    owner.submit("/forgot", "/forgot", {"email": email})
    [mail] = [m for m in stack.mails_to(email) if m.subject == "Reset your password"]
    link = re.search(r'href="([^"]+/reset\?token=[^"]+)"', mail.html).group(1)
    form = owner.get(link)
    done = owner.post(
        "/reset", {"token": form.field("token"), "password": "the owners new passphrase"}, csrf_from=form
    )
    # Then they are in, and can log in again elsewhere
    assert done.status == 303 and owner.get(done.location).has("Log in to SolusVM")
    assert log_in(new_browser(), email, "the owners new passphrase").status == 303


def test_a_hash_of_the_earlier_scheme_still_logs_in_and_is_replaced_by_argon2id(browser, new_browser, stack):
    # Given an account whose password was stored with the earlier scrypt scheme
    import base64
    import hashlib

    email = enrolled(browser, stack)
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = lambda data: base64.urlsafe_b64encode(data).decode().rstrip("=")  # noqa: E731
    AccountItem(email).update(
        actions=[AccountItem.password_hash.set(f"scrypt$14$8$1${b64(salt)}${b64(key)}")]
    )
    # When the client logs in
    assert log_in(new_browser(), email).status == 303
    # Then the stored hash is argon2id now, and still opens the account
    assert AccountItem.get(email).password_hash.startswith("$argon2id$")
    assert log_in(new_browser(), email).status == 303
