"""Pay now outside the site, through the worker, SES and localstripe: the invoice email (and its PDF) and the
suspension email link to the invoice page, the email says when the card on file is charged instead, and
without Stripe they read as before."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import date

import pytest

from tests.integration.billing_helpers import drain, enrolled_account, invoice_mails, invoices_of, invoke
from tests.integration.payment_helpers import JUNE_2026, card_on_file, intents_of
from tests.integration.test_invoice_documents import pdf_text
from tests.integration.test_upkeep import daily, make_overdue

JUNE = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]  # 5.00 USD
SITE = "http://localhost:8080"


BUILT_FROM_SETTINGS = ("invoicing", "upkeep", "automation", "gateway", "collection")


@pytest.fixture
def without_stripe(functions, monkeypatch) -> Iterator[Callable[[], None]]:
    """The worker and the daily automation as deployed without Stripe (the stack configures localstripe)."""
    containers = [functions[name].container for name in ("worker", "automation")]

    def apply() -> None:
        for container in containers:
            off = dataclasses.replace(
                container.settings,
                stripe_secret_key_secret=None,
                stripe_webhook_secret_secret=None,
                stripe_publishable_key=None,
            )
            monkeypatch.setattr(container, "settings", off)
            for built in BUILT_FROM_SETTINGS:
                if built in container.__dict__:
                    monkeypatch.delitem(container.__dict__, built)

    yield apply
    # what was built without Stripe goes; monkeypatch then puts back what was built before
    for container in containers:
        for built in BUILT_FROM_SETTINGS:
            container.__dict__.pop(built, None)


def june_invoice(stack, functions, worker, *, card: bool = False):
    account = enrolled_account(stack, functions, servers=JUNE, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, functions["worker"].container, account) if card else None
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    return account, item, customer


def test_an_unpaid_invoice_email_and_its_pdf_link_pay_now_to_the_invoice_page(stack, functions, worker):
    # Given a client with no card on file, and Stripe configured
    account, item, _ = june_invoice(stack, functions, worker)
    # Then the one invoice email has a Pay now button to the invoice page, and its PDF the same link
    page = f"{SITE}/invoices/{item.number}"
    [mail] = invoice_mails(stack, account.email)
    assert f'<a href="{page}"' in mail.html and ">Pay now</a> by card, on the invoice page." in mail.html
    assert "charged" not in mail.html
    assert f"Pay online: {page}" in pdf_text(mail.attachments[f"{item.number}.pdf"])


def test_with_a_card_on_file_the_email_says_it_is_charged_and_the_charge_follows_once(
    stack, functions, worker
):
    # Given a client with a Visa on file, whose June is invoiced (the worker emails, then charges)
    account, item, customer = june_invoice(stack, functions, worker, card=True)
    # Then the one invoice email names the card and asks nothing: no Pay now, no due date to pay by
    [mail] = invoice_mails(stack, account.email)
    assert "Your Visa card ending in 4242 is charged <strong>5.00 USD</strong>" in mail.html
    assert ">Pay now</a>" not in mail.html and "Payment is due by" not in mail.html
    # and the charge it announced was made, once, with one receipt
    assert item.status == "paid"
    assert [i.status for i in intents_of(stack, customer)] == ["succeeded"]
    assert len([m for m in stack.mails_to(account.email) if m.subject.startswith("Receipt")]) == 1


def test_the_suspension_email_links_pay_now(stack, functions, worker):
    # Given an invoice overdue past the grace days, with Stripe configured
    account, item, _ = june_invoice(stack, functions, worker)
    make_overdue(item.number, days=15)
    # When the daily upkeep suspends the client
    result = daily(functions, date.today())
    assert item.number in result["upkeep"]["suspended"]
    # Then its email has a Pay now button to the invoice page
    [mail] = [m for m in stack.mails_to(account.email) if "suspended" in m.subject]
    assert f'<a href="{SITE}/invoices/{item.number}"' in mail.html and ">Pay now</a>" in mail.html


def test_without_stripe_the_emails_and_the_pdf_offer_no_pay_now(stack, functions, worker, without_stripe):
    # Given the product deployed without Stripe
    without_stripe()
    # When an invoice is issued, then overdue
    account, item, _ = june_invoice(stack, functions, worker)
    make_overdue(item.number, days=15)
    daily(functions, date.today())
    # Then the invoice email, its PDF and the suspension email link the invoice only, as before
    [mail] = invoice_mails(stack, account.email)
    assert "Pay now" not in mail.html and "charged" not in mail.html and "View the invoice" in mail.html
    assert "Pay online" not in pdf_text(mail.attachments[f"{item.number}.pdf"])
    [suspended] = [m for m in stack.mails_to(account.email) if "suspended" in m.subject]
    assert "Pay now" not in suspended.html and "View the invoice" in suspended.html
