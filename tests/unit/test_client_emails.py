"""What the client's emails say, rendered: the decline reason's sentence ends once."""

from __future__ import annotations

import pytest

from postpay.templating import render
from tests.unit.test_tax_and_invoice_document import invoice

PAGE = "https://billing.example.com/invoices/INV-000001"


@pytest.mark.parametrize("reason", ["Your card was declined.", "Your card was declined"])
@pytest.mark.parametrize("template", ["email/payment_failed.txt", "email/payment_failed.html"])
def test_the_decline_reason_ends_with_one_period(template, reason):
    text = render(template, subject="Declined", invoice=invoice(), reason=reason, invoice_url=PAGE)
    assert "Your card was declined." in text and "declined.." not in text
