"""Pay now outside the site: the invoice email, the suspension email and the PDF link to the invoice page
when card payments are configured, the invoice email says when the card on file is charged instead of
asking to pay, and without Stripe all three read as before."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from postpay.billing.collection import Collection
from postpay.billing.invoicing import Invoicing
from postpay.billing.pdf import invoice_pdf
from postpay.config import Settings
from postpay.models import InvoiceStatus, Pricing
from postpay.payments import Card, CardOnFile, ChargeResult, pay_online_url
from postpay.templating import render
from tests.unit.fakes import FakeAccounts, FakeBilling, FakeMailer, FakeQueue, FakeSolus, FixedClock
from tests.unit.payment_fakes import FakeGateway, FakePaymentsStore
from tests.unit.test_config import BASE
from tests.unit.test_payments import STRIPE
from tests.unit.test_tax_and_invoice_document import invoice, pdf_text

VISA = Card(payment_method="pm_visa", brand="visa", last4="4242", exp_month=12, exp_year=2030)
PAGE = "https://billing.example.com/invoices/INV-000001"
TODAY = date(2026, 11, 2)


class World:
    """Invoicing and Collection on fakes, as the worker has them; ``stripe`` configures card payments."""

    def __init__(self, *, stripe: bool) -> None:
        self.settings = Settings.from_env({**BASE, **(STRIPE if stripe else {})})
        self.clock = FixedClock(datetime(2026, 11, 2, 0, 5, tzinfo=UTC))
        self.payments, self.mailer, self.billing = FakePaymentsStore(), FakeMailer(), FakeBilling()
        self.collection = Collection(
            settings=self.settings,
            payments=self.payments,
            gateway=FakeGateway(),
            invoices=self.billing,
            mailer=self.mailer,
            clock=self.clock,
        )
        self.invoicing = Invoicing(
            settings=self.settings,
            accounts=FakeAccounts(),
            billing=self.billing,
            solus=FakeSolus(),
            mailer=self.mailer,
            clock=self.clock,
            pricing=lambda: Pricing(Decimal("0.001"), "USD"),
            queue=FakeQueue(),
            card_to_charge=self.collection.card_to_charge if stripe else None,
        )

    def card_on_file(self) -> None:
        self.payments.cards[7] = CardOnFile(customer="cus_ada", card=VISA)

    def email(self, sent_invoice=None) -> tuple[str, str, str]:
        """Sends the invoice email; its text, its HTML and its PDF's text, as the client reads them."""
        self.invoicing.send_invoice_email(sent_invoice or invoice())
        mail = self.mailer.sent[-1]
        context = {**mail.context, "subject": "Invoice"}
        return (
            render("email/invoice.txt", **context),
            render("email/invoice.html", **context),
            pdf_text(mail.attachments[0][2]),
        )


# the link -------------------------------------------------------------------------------------------


def test_the_pay_link_is_the_invoice_page_only_when_stripe_is_configured_and_the_invoice_is_payable():
    stripe, plain = Settings.from_env({**BASE, **STRIPE}), Settings.from_env(BASE)
    assert pay_online_url(stripe, invoice()) == PAGE
    assert pay_online_url(plain, invoice()) is None
    assert pay_online_url(stripe, invoice(status=InvoiceStatus.PAID)) is None
    assert pay_online_url(stripe, invoice(status=InvoiceStatus.VOID)) is None
    # below the gateway's minimum: paid by transfer, Pay now would refuse it
    assert pay_online_url(stripe, invoice(total=Decimal("0.49"))) is None


# the invoice email ------------------------------------------------------------------------------------


def test_without_stripe_the_invoice_email_asks_to_pay_as_before_and_offers_no_pay_now():
    world = World(stripe=False)
    world.card_on_file()  # a card saved while Stripe was on is never mentioned once it is off
    text, html, pdf = world.email()
    assert "Payment is due by 2026-11-15." in text and "How to pay: IBAN GB00" in text
    assert f"View the invoice: {PAGE}" in text
    for body in (text, html, pdf):
        assert "Pay now" not in body and "Pay online" not in body and "charged" not in body


def test_with_stripe_and_no_card_the_invoice_email_links_pay_now_to_the_invoice_page():
    text, html, pdf = World(stripe=True).email()
    assert f"Pay now, by card, on the invoice page: {PAGE}" in text
    assert f'<a href="{PAGE}"' in html and ">Pay now</a>" in html
    assert "Payment is due by 2026-11-15." in text and "How to pay: IBAN GB00" in text  # transfer stays
    assert "charged" not in text
    assert f"Pay online: {PAGE}" in pdf


def test_with_a_card_on_file_the_invoice_email_says_it_is_charged_instead_of_asking_to_pay():
    # Given a card on file and no charge attempt yet (the worker emails, then charges)
    world = World(stripe=True)
    world.card_on_file()
    text, html, _pdf = world.email()
    # Then the email names the card and the amount, and neither asks to pay nor offers Pay now
    sentence = "Your Visa card ending in 4242 is charged 15.00 USD for this invoice automatically"
    assert sentence in text and "nothing for you to do" in text
    assert "Your Visa card ending in 4242 is charged <strong>15.00 USD</strong>" in html
    assert "Payment is due by" not in text and "How to pay" not in text and "Pay now," not in text
    assert ">Pay now</a>" not in html and f"View the invoice: {PAGE}" in text


def test_after_a_declined_attempt_the_invoice_email_offers_pay_now_not_the_card():
    # Given an invoice whose automatic charge was declined (an operator resends the email)
    world = World(stripe=True)
    world.card_on_file()
    world.payments.claim_charge("INV-000001", 1, world.clock.now(), timedelta(minutes=3))
    declined = ChargeResult(intent_id="pi_1", status="failed", reason="Your card was declined.")
    world.payments.record_charge("INV-000001", 1, declined, world.clock.now())
    text, _html, _pdf = world.email()
    assert "charged" not in text and f"Pay now, by card, on the invoice page: {PAGE}" in text


def test_a_charge_still_processing_is_still_the_automatic_charge():
    world = World(stripe=True)
    world.card_on_file()
    world.payments.claim_charge("INV-000001", 1, world.clock.now(), timedelta(minutes=3))
    assert world.collection.card_to_charge(invoice()) == VISA  # claimed, not yet answered
    processing = ChargeResult(intent_id="pi_1", status="processing")
    world.payments.record_charge("INV-000001", 1, processing, world.clock.now())
    assert world.collection.card_to_charge(invoice()) == VISA


def test_an_invoice_already_paid_when_its_email_goes_says_so_and_asks_nothing():
    # Given an invoice paid (Pay now on the page) before its email could be sent
    world = World(stripe=True)
    world.card_on_file()
    paid = invoice(status=InvoiceStatus.PAID, paid_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    text, html, pdf = world.email(paid)
    assert "This invoice is paid: thank you, there is nothing to pay." in text
    assert "This invoice is paid:" in html
    for body in (text, html, pdf):
        assert "Pay now" not in body and "charged" not in body and "Pay online" not in body
    assert "Payment is due by" not in text


@pytest.mark.parametrize("total", ["0.49", "0.01"])
def test_below_the_minimum_charge_the_email_asks_for_a_transfer_even_with_a_card(total):
    world = World(stripe=True)
    world.card_on_file()
    small = invoice(total=Decimal(total))
    text, _html, pdf = world.email(small)
    assert "How to pay: IBAN GB00" in text and "charged" not in text and "Pay now" not in text
    assert "Pay online" not in pdf


# the suspension email ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pay_url", [PAGE, None])
def test_the_suspension_email_links_pay_now_only_with_a_pay_link(pay_url):
    context = {"subject": "Suspended", "invoice": invoice(), "invoice_url": PAGE, "pay_url": pay_url}
    text, html = render("email/suspended.txt", **context), render("email/suspended.html", **context)
    if pay_url:
        assert f"Pay now, by card, on the invoice page: {PAGE}" in text and ">Pay now</a>" in html
    else:
        assert "Pay now" not in text + html and text.endswith(f"View the invoice: {PAGE}")


# the PDF ----------------------------------------------------------------------------------------------


def test_the_pdf_prints_pay_online_in_its_payment_section_only_when_given_a_link():
    with_link = pdf_text(invoice_pdf(invoice(), today=TODAY, pay_url=PAGE))
    assert f"Pay online: {PAGE}" in with_link
    assert with_link.index("How to pay") < with_link.index("IBAN GB00") < with_link.index("Pay online")
    assert "Pay online" not in pdf_text(invoice_pdf(invoice(), today=TODAY))
    # no payment instructions configured: the section is there for the link alone
    alone = pdf_text(invoice_pdf(invoice(payment_instructions=""), today=TODAY, pay_url=PAGE))
    assert "How to pay" in alone and f"Pay online: {PAGE}" in alone
    assert "How to pay" not in pdf_text(invoice_pdf(invoice(payment_instructions=""), today=TODAY))


def test_the_pdf_with_its_link_is_the_same_bytes_each_time_and_is_clickable():
    first = invoice_pdf(invoice(), today=TODAY, pay_url=PAGE)
    assert first == invoice_pdf(invoice(), today=TODAY, pay_url=PAGE)
    # dated the day it is rendered for, not by the clock (two renderings a second apart differed)
    assert f"/CreationDate (D:{TODAY:%Y%m%d}000000".encode() in first
    assert f"/URI ({PAGE})".encode() in first


def test_a_paid_invoice_pdf_prints_no_payment_section_even_with_a_link():
    paid = replace(invoice(), status=InvoiceStatus.PAID, paid_at=datetime(2026, 11, 1, tzinfo=UTC))
    text = pdf_text(invoice_pdf(paid, today=TODAY, pay_url=PAGE))
    assert "Pay online" not in text and "How to pay" not in text
