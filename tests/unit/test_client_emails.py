"""What the client's emails say, rendered: the decline reason's sentence ends once, and the client
is greeted by the name the invoice carries."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from postpay.models import CreditNote
from postpay.templating import render
from tests.unit.test_tax_and_invoice_document import invoice

PAGE = "https://billing.example.com/invoices/INV-000001"


@pytest.mark.parametrize("reason", ["Your card was declined.", "Your card was declined"])
@pytest.mark.parametrize("template", ["email/payment_failed.txt", "email/payment_failed.html"])
def test_the_decline_reason_ends_with_one_period(template, reason):
    text = render(template, subject="Declined", invoice=invoice(), reason=reason, invoice_url=PAGE)
    assert "Your card was declined." in text and "declined.." not in text


def _context(**changes: object) -> dict[str, object]:
    ada = invoice(**changes)
    note = CreditNote(
        number="CN-000001",
        invoice_number=ada.number,
        client_id=ada.client_id,
        email=ada.email,
        period_start=ada.period_start,
        period_end=ada.period_end,
        currency=ada.currency,
        subtotal=-ada.subtotal,
        tax=-ada.tax,
        total=-ada.total,
        issued_on=date(2026, 11, 3),
        reason="billed twice",
        buyer=ada.buyer,
    )
    return {
        "subject": "Subject",
        "invoice": ada,
        "credit_note": note,
        "reason": "Your card was declined.",
        "amount": "15.00 USD",
        "refunded": Decimal("15.00"),
        "in_full": True,
        "invoice_url": PAGE,
        "pay_url": None,
    }


GREETED = ["receipt", "payment_failed", "payment_refunded", "credit_note", "suspended", "refund"]


@pytest.mark.parametrize("name", GREETED)
@pytest.mark.parametrize("kind", ["txt", "html"])
def test_the_client_is_greeted_by_the_name_on_the_invoice(name, kind):
    # the void payment's refund email has its amount as text, the operator's refund email as an amount
    amount = Decimal("15.00") if name == "refund" else "15.00 USD"
    assert "Hello Ada," in render(f"email/{name}.{kind}", **{**_context(), "amount": amount})
    anonymous = render(f"email/{name}.{kind}", **{**_context(buyer=None), "amount": amount})
    assert "Hello there," in anonymous and "Hello," not in anonymous
