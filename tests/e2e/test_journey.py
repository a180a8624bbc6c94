"""A new customer's whole journey in a real browser: landing, sign-up, email, terms, SolusVM."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import expect


def test_sign_up_confirm_accept_and_log_in_to_solusvm(site, page):
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"

    # The landing page explains the offer and leads to the form
    page.goto(site.base + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("paid after you use them")
    expect(page.get_by_text("0.001 USD")).to_be_visible()
    page.get_by_role("link", name="Sign up").first.click()

    # A mistake is shown next to its field, and what was typed is kept
    page.get_by_label("Your name").fill("Grace Hopper")
    page.get_by_label("Company (optional)").fill("Navy")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("1234567890")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#password-error")).to_contain_text("too easy to guess")
    expect(page.get_by_label("Email address")).to_have_value(email)

    page.get_by_label("Password").fill("a very long passphrase")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    # The email arrives in the local mailbox; its link opens the terms
    page.goto(site.base + "/_local/mail")
    page.locator("article", has_text=email).first.get_by_role("link", name="Confirm my email address").click()
    expect(page.get_by_role("heading", name="One last step")).to_be_visible()

    # The password chosen at sign-up, then both boxes
    page.get_by_label("The password you chose when you signed up").fill("a very long passphrase")
    page.get_by_label("Terms of Service").check()
    page.get_by_label("Post-Pay Terms").check()
    page.get_by_role("button", name="Accept and create my account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")

    # The user exists in SolusVM, linked to the billing client
    users = requests.get(site.emulator + "/_emulator/state", timeout=5).json()["users"]
    assert [u["email"] for u in users if u["email"] == email] == [email]

    # One click lands in the control panel as that user
    page.get_by_role("button", name="Log in to SolusVM").click()
    expect(page.locator("#who")).to_have_text(f"Logged in as {email}")

    # A returning user: log out, log in, and reach the panel again from the dashboard
    page.goto(site.base + "/dashboard")
    expect(page.locator("#enrolled-panel")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto(site.base + "/dashboard")
    expect(page).to_have_url(site.base + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("wrong password, sorry")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Email or password is incorrect.")
    page.get_by_label("Password").fill("a very long passphrase")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello Grace Hopper")
    expect(page.locator("#usage")).to_contain_text("tokens since")
    page.get_by_role("button", name="Log in to SolusVM").click()
    expect(page.locator("#who")).to_have_text(f"Logged in as {email}")


def test_forgotten_password_is_reset_by_email(site, page):
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    page.goto(site.base + "/signup")
    page.get_by_label("Your name").fill("Ada")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("first passphrase here")
    page.get_by_role("button", name="Sign up").click()
    page.goto(site.base + "/_local/mail")
    page.locator("article", has_text=email).first.get_by_role("link", name="Confirm my email address").click()
    page.get_by_label("The password you chose when you signed up").fill("first passphrase here")
    page.get_by_label("Terms of Service").check()
    page.get_by_label("Post-Pay Terms").check()
    page.get_by_role("button", name="Accept and create my account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    page.context.clear_cookies()
    page.goto(site.base + "/forgot")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account uses")
    page.goto(site.base + "/_local/mail")
    page.locator("article", has_text="Reset your password").filter(has_text=email).first.get_by_role(
        "link", name="Reset my password"
    ).click()
    page.get_by_label("New password").fill("second passphrase here")
    page.get_by_role("button", name="Save my new password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    expect(page.locator("#enrolled-panel")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("second passphrase here")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#enrolled-panel")).to_be_visible()


def test_security_headers_and_phone_layout(site, chromium):
    context = chromium.new_context(viewport={"width": 375, "height": 740})
    tab = context.new_page()
    response = tab.goto(site.base + "/signup")
    assert response is not None
    headers = response.headers
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]
    # readable on a phone: nothing wider than the screen
    assert tab.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()
