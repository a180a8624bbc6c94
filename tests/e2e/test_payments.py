"""Getting paid in a real browser: a card saved through Stripe.js (localstripe's), a month invoiced and
charged, a declined card dunned by email and paid with Pay now."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.e2e.conftest import ROOT
from tests.e2e.test_pages import check

PASSWORD = "a very long passphrase"


def sign_up(site, page) -> str:
    email = f"pay-{uuid.uuid4().hex[:10]}@example.com"
    page.goto(site.base + "/signup")
    page.get_by_label("Your name").fill("Ada Lovelace")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    page.goto(site.base + "/_local/mail")
    page.locator("article", has_text=email).first.get_by_role("link", name="Confirm my email address").click()
    page.get_by_label("The password you chose when you signed up").fill(PASSWORD)
    page.get_by_label("Terms of Service").check()
    page.get_by_label("Post-Pay Terms").check()
    page.get_by_role("button", name="Accept and create my account").click()
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    return email


def add_card(site, page, number: str) -> None:
    page.goto(site.base + "/account/card")
    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10001")
    page.get_by_role("button", name="Save the card").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your card is saved. New invoices are charged to it when they are issued."
    )


def checked(page, name: str) -> None:
    """axe-core and the phone width (tests/e2e/test_pages.check) on the page as this client sees it, in a
    context of its own that lets the test's script past the page's CSP (this test's pages keep theirs)."""
    context = page.context.browser.new_context(bypass_csp=True, storage_state=page.context.storage_state())
    try:
        copy = context.new_page()
        copy.goto(page.url)
        check(copy, name)
    finally:
        context.close()


_RUNS = iter(range(10, 60))


def invoice_this_month(site) -> None:
    """The operator's `make invoice` for the current month, with the clock moved to the next 1st: a run of
    its own (a minute after the last, RUN_JOIN_MINUTES 0), never joining an earlier run that did not hold
    this test's new client."""
    now = datetime.now(UTC)
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}",
        **site.ports,
        "RUN_JOIN_MINUTES": "0",
    }
    minute = next(_RUNS)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "local.invoice",
            "--date",
            first.date().isoformat(),
            "--now",
            f"{first.date().isoformat()}T00:{minute:02d}:00Z",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )


def test_a_saved_card_is_charged_and_a_declined_one_is_dunned_then_paid_with_pay_now(site, page):
    # A client saves the test card 4242 4242 4242 4242 and the month is invoiced: the invoice is paid
    sign_up(site, page)
    add_card(site, page, "4242424242424242")
    expect(page.locator("#card")).to_contain_text("Visa ending in 4242, expires 12/2034")
    invoice_this_month(site)
    page.goto(site.base + "/invoices")
    page.locator("table a").first.click()
    # the run is finished once the invoice is issued; the worker charges the card right after it
    for _ in range(30):
        if page.locator("#invoice-status").inner_text().strip() == "Paid":
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(page.locator("#invoice-status")).to_have_text("Paid")
    expect(page.locator("main")).to_contain_text("by card")

    # Another client's card is declined: the dunning email links to Pay now, which pays with a new card
    page.context.clear_cookies()
    email = sign_up(site, page)
    add_card(site, page, "4000000000000341")
    invoice_this_month(site)
    mail = page.locator("article", has_text="We could not charge your card").filter(has_text=email).first
    for _ in range(30):  # the worker charges the card right after issuing the invoice
        page.goto(site.base + "/_local/mail")
        if mail.count():
            break
        page.wait_for_timeout(1000)
    # the dashboard tells the truth about the declined card, rather than that invoices are charged to it
    page.goto(site.base + "/dashboard")
    expect(page.locator("#card-declined")).to_contain_text("This card was declined when we charged invoice")
    expect(page.locator("#card-on-file")).not_to_contain_text("New invoices are charged to it")
    checked(page, "dashboard-card-declined")
    page.goto(site.base + "/_local/mail")
    mail.get_by_role("link", name="Pay it now").click()
    expect(page.locator("#invoice-status")).to_have_text("Unpaid")
    page.get_by_role("link", name="Pay now").click()
    pay_now = page.url
    page.get_by_role("link", name="Use another card").click()
    add_card(site, page, "4242424242424242")
    page.goto(pay_now)
    page.get_by_role("button", name="with Visa ending in 4242").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: the invoice is paid.")
    expect(page.locator("main")).to_contain_text("by card")


def test_removing_the_card_asks_first_and_survives_back(site, page):
    # Given a client with a card on file
    sign_up(site, page)
    add_card(site, page, "4242424242424242")
    page.goto(site.base + "/dashboard")
    # When they press Remove the card: a page asks first
    page.get_by_role("link", name="Remove the card").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove your card?")
    expect(page.locator("main")).to_contain_text("Visa ending in 4242")
    checked(page, "card-remove")
    # Back, or "No, keep the card", keeps it
    page.go_back()
    expect(page.locator("#card")).to_contain_text("Visa ending in 4242")
    page.get_by_role("link", name="Remove the card").click()
    page.get_by_role("link", name="No, keep the card").click()
    expect(page.locator("#card")).to_contain_text("Visa ending in 4242")
    # Then confirming removes it, and Back to the question shows the account without a card
    page.get_by_role("link", name="Remove the card").click()
    page.get_by_role("button", name="Yes, remove the card").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your card is removed. Invoices are paid by bank transfer."
    )
    expect(page.locator("#card")).to_contain_text("No card on file")
    page.go_back()
    expect(page).to_have_url(site.base + "/account")
    expect(page.locator("#card")).to_contain_text("No card on file")
