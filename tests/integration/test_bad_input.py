"""Bad input never yields a 5xx, and nothing is stored from a rejected request."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from postpay.adapters.tables import AccountItem
from tests.integration.conftest import new_email


def _form(browser, email):
    page = browser.get("/signup")
    fields = {
        "csrf_token": page.field("csrf_token"),
        "name": "A",
        "company": "",
        "email": email,
        "password": "a long enough passphrase",
    }
    return fields


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda f: urlencode(f).encode() + b"&name=B", 400, "sent more than once"),
        (lambda f: urlencode({**f, "company": "x" * 17000}).encode(), 413, "larger than 16 KB"),
        (lambda f: urlencode(f).encode() + b"&company=%ff%fe", 400, "not valid UTF-8"),
        (lambda f: urlencode(f).encode() + b"&x=\xff", 400, "not valid UTF-8"),
        (lambda f: urlencode({k: v for k, v in f.items() if k != "csrf_token"}).encode(), 403, "expired"),
        (lambda f: urlencode({**f, "csrf_token": "forged" * 8}).encode(), 403, "expired"),
    ],
    ids=[
        "duplicated-field",
        "body-over-16kb",
        "invalid-utf8-escaped",
        "invalid-utf8-raw",
        "no-csrf",
        "bad-csrf",
    ],
)
def test_malformed_signup_posts_are_refused_with_a_clear_4xx(browser, stack, mutate, status, message):
    email = new_email()
    page = browser.post("/signup", {}, raw=mutate(_form(browser, email)))
    assert page.status == status
    assert page.has(message)
    assert AccountItem.count(email) == 0 and not stack.mails_to(email)


def test_wrong_content_type_is_415(browser):
    email = new_email()
    page = browser.post(
        "/signup", {}, raw=b'{"email": "a@b.c"}', headers={"Content-Type": "application/json"}
    )
    assert page.status == 415
    assert AccountItem.count(email) == 0


def test_cross_site_post_is_refused(browser):
    email = new_email()
    fields = _form(browser, email)
    page = browser.post("/signup", fields, headers={"Origin": "https://evil.example"})
    assert page.status == 403 and AccountItem.count(email) == 0


def test_missing_fields_rerender_the_form_with_messages(browser):
    page = browser.get("/signup")
    answer = browser.post("/signup", {}, csrf_from=page)
    assert answer.status == 400
    assert (
        answer.has("Enter your name.")
        and answer.has("Enter your email address.")
        and answer.has("Choose a password.")
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/signup/extra", 404),
        ("DELETE", "/signup", 405),
        ("PUT", "/verify", 405),
        ("GET", "/sso", 405),
    ],
)
def test_unknown_routes_and_methods(browser, method, path, status):
    page = browser.request(method, path)
    assert page.status == status
    assert page.headers["Content-Type"].startswith("text/html")
    if status == 405:
        assert page.headers["Allow"]


def test_verify_query_with_a_duplicated_token_is_400(browser):
    assert browser.get("/verify?token=a&token=b").status == 400


@pytest.mark.parametrize("length", [1, 32, 42, 44, 200])
def test_a_csrf_token_of_the_wrong_length_is_refused_before_any_comparison(new_browser, monkeypatch, length):
    # Given a browser whose cookie and field hold the same value, of a length we never issue
    import postpay.web.pages as pages

    compared: list[tuple[str, str]] = []
    monkeypatch.setattr(pages, "same", lambda a, b: compared.append((a, b)) or a == b)
    browser = new_browser()
    browser.jar["__Host-csrf"] = "x" * length
    # When it posts a form
    answer = browser.post(
        "/login", {"csrf_token": "x" * length, "email": new_email(), "password": "whatever it is"}
    )
    # Then it is refused, and no comparison ran
    assert answer.status == 403 and answer.has("expired")
    assert compared == []
