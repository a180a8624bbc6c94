"""Sign-up: the landing page, the form, the email, no enumeration, rate limits."""

from __future__ import annotations

import time

from postpay.adapters.tables import AccountItem, TokenItem
from postpay.security import token_hash
from tests.integration.conftest import new_email, sign_up, verify, verify_link

SECURITY_HEADERS = {
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
}


def test_landing_page_explains_the_offer_with_the_operators_price(browser):
    # When
    page = browser.get("/")
    # Then
    assert page.status == 200
    assert page.has("0.001 USD"), "the token price and currency from SSM are shown"
    assert page.has("tokens") and page.has('href="/signup"') and page.has('href="/login"')
    assert set(page.headers) >= SECURITY_HEADERS
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_signup_form_has_labels_and_a_csrf_token(browser):
    page = browser.get("/signup")
    assert page.status == 200
    for name in ("name", "company", "email", "password"):
        assert f'<label for="{name}"' in page.body
    assert page.field("csrf_token")
    csrf_cookie = next(c for c in page.cookies if c.startswith("__Host-csrf="))
    assert "Secure" in csrf_cookie and "HttpOnly" in csrf_cookie and "SameSite=Lax" in csrf_cookie


def test_valid_signup_sends_a_link_built_from_the_configured_base_url(browser, stack):
    # Given
    email = new_email()
    # When: the request claims another Host
    form = browser.get("/signup")
    page = browser.post(
        "/signup",
        {
            "name": "Ada",
            "company": "",
            "email": "  " + email.upper() + " ",
            "password": "a long enough passphrase",
        },
        csrf_from=form,
        headers={"Host": "evil.example"},
    )
    # Then the form redirects (post-redirect-get) to the page that says to check the inbox
    assert page.status == 303 and page.location == "/signup/sent"
    sent = browser.get(page.location)
    assert sent.status == 200 and sent.has("Check your inbox") and email not in sent.body.lower()
    link = verify_link(stack, email)
    assert link.startswith("http://localhost:8080/verify?token=")
    assert AccountItem.count(email) == 0, "an attempt is no account"
    token = link.split("token=")[1]
    attempt = TokenItem.get(token_hash(token))
    assert attempt.email == email and attempt.purpose == "verify" and attempt.expires_at > time.time()
    assert attempt.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), "hashed with argon2id"
    assert token not in str(attempt.attribute_values), "only the token's hash is stored"


def test_invalid_signup_shows_a_message_per_field_and_keeps_values_but_not_the_password(browser, stack):
    email = new_email()
    page = sign_up(browser, email, password="1234567890", name="", company="x" * 101)
    assert page.status == 400
    assert page.has("Enter your name.")
    assert page.has("Use at most 100 characters.")
    assert page.has("too easy to guess")
    assert page.has(f'value="{email}"')
    assert "1234567890" not in page.body
    assert AccountItem.count(email) == 0, "nothing is stored from a rejected sign-up"
    assert not stack.mails_to(email)


def test_password_equal_to_the_email_is_refused(browser):
    email = new_email()
    page = sign_up(browser, email, password=email)
    assert page.status == 400 and page.has("must not be your email")


def test_same_answer_for_a_known_address_and_the_owner_is_told_they_have_an_account(
    browser, new_browser, stack
):
    # Given an enrolled account
    email = new_email()
    sign_up(browser, email)
    assert verify(browser, stack, email).has("Log in to SolusVM")
    fresh = new_email()
    # When someone signs up with the known address and someone else with a fresh one
    known = sign_up(new_browser(), email)
    unknown = sign_up(new_browser(), fresh)
    # Then the answers are the same redirect, to the same page, which names neither address
    assert (known.status, known.location) == (unknown.status, unknown.location) == (303, "/signup/sent")
    assert known.body == unknown.body and sorted(known.headers) == sorted(unknown.headers)
    assert email not in known.location + known.body and fresh not in unknown.location + unknown.body
    assert new_browser().get(known.location).body == new_browser().get(unknown.location).body
    assert stack.mails_to(email)[-1].subject == "You already have an account"
    assert AccountItem.get(email).status == "enrolled", "the existing account is untouched"


def test_response_time_does_not_reveal_a_known_address(new_browser, stack, settings_override):
    settings_override(signup_min_response_ms=700)
    email = new_email()
    sign_up(new_browser(), email)
    # Two rounds, alternating branches; each branch is judged by its fastest answer, so a load spike on a
    # shared machine does not pass for a difference between branches (the address allows 3 emails/hour).
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(2):
        for label, address in (("known", email), ("unknown", new_email())):
            browser = new_browser()
            form = browser.get("/signup")
            started = time.monotonic()
            page = browser.post(
                "/signup",
                {"name": "A", "company": "", "email": address, "password": "a long enough passphrase"},
                csrf_from=form,
            )
            timings[label].append(time.monotonic() - started)
            assert page.status == 303
    fastest = {label: min(values) for label, values in timings.items()}
    assert min(fastest.values()) >= 0.7
    assert abs(fastest["known"] - fastest["unknown"]) < 0.25, timings


def test_signing_up_again_is_a_separate_attempt_with_its_own_link(browser, new_browser, stack):
    email = new_email()
    sign_up(browser, email)
    old_link = verify_link(stack, email)
    sign_up(new_browser(), email)
    new_link = verify_link(stack, email)
    assert new_link != old_link
    assert browser.get(old_link).status == 200, "the first attempt is untouched"
    assert browser.get(new_link).status == 200


def test_at_most_three_emails_per_address_per_hour(new_browser, stack):
    email = new_email()
    for _ in range(3):
        assert sign_up(new_browser(), email).status == 303
    page = sign_up(new_browser(), email)
    assert page.status == 429 and page.has("try again later")
    assert len(stack.mails_to(email)) == 3


def test_at_most_twenty_signups_per_source_ip_per_hour(new_browser, stack):
    browser = new_browser(source_ip="198.51.100.77")
    for _ in range(20):
        assert sign_up(browser, new_email()).status == 303
    blocked = new_email()
    page = sign_up(browser, blocked)
    assert page.status == 429
    assert not stack.mails_to(blocked) and AccountItem.count(blocked) == 0


def test_reloading_check_your_inbox_does_not_send_the_form_again(browser, stack):
    # Given a sign-up that landed on "Check your inbox"
    email = new_email()
    sent = sign_up(browser, email)
    assert sent.status == 303 and sent.location == "/signup/sent"
    # When the page is reloaded (twice), or opened later from history
    pages = [browser.get(sent.location) for _ in range(3)]
    # Then it is the same GET page each time, and only the one email was sent
    assert all(p.status == 200 and p.has("Check your inbox") for p in pages)
    assert len([m for m in stack.mails_to(email) if m.subject == "Confirm your email address"]) == 1
    assert browser.post("/signup/sent", {}, csrf_from=browser.get("/signup")).status == 405
