"""Voiding an invoice: a credit note in its own gapless series, and the month billed again exactly once."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from postpay.adapters.tables import AccountItem, InvoiceItem
from postpay.billing.commands import PayloadError
from tests.integration.billing_helpers import drain, enrolled_account, invoice_mails, invoke, logged_in
from tests.integration.test_invoice_documents import example_profile  # noqa: F401 (a fixture)
from tests.integration.test_invoicing import OCTOBER_SERVERS
from tests.integration.test_upkeep import daily, make_overdue, solus_status

PASSWORD = "a long enough passphrase"


def _october_invoice(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    return account, InvoiceItem.get(f"{account.client_id}#2022-10")


def _credit_notes(client_id: int) -> list[InvoiceItem]:
    return [i for i in InvoiceItem.by_client.query(client_id) if i.outcome == "credit_note"]


def test_void_issues_a_credit_note_then_rebill_bills_the_month_once_with_a_new_number(
    stack, functions, worker, browser
):
    # Given an unpaid October invoice
    account, invoice = _october_invoice(stack, functions, worker)
    # When the operator voids it
    result = invoke(functions, {"voidInvoice": invoice.number, "reason": "wrong plan price"})
    # Then a credit note reverses it in full, referencing it, and the invoice is void (never deleted)
    note = result["creditNote"]
    assert re.fullmatch(r"CN-\d{6}", note["number"]) and note["invoice"] == invoice.number
    assert note["total"] == "-8.19" and note["currency"] == "USD" and note["reason"] == "wrong plan price"
    voided = InvoiceItem.get(invoice.account_period)
    assert (voided.status, voided.number, voided.credit_note) == ("void", invoice.number, note["number"])
    [stored] = _credit_notes(account.client_id)
    assert json.loads(stored.document)["invoice_number"] == invoice.number
    # and the client is emailed the credit note
    [mail] = [m for m in stack.mails_to(account.email) if m.subject.startswith("Credit note")]
    assert note["number"] in mail.subject and invoice.number in mail.subject and "-8.19 USD" in mail.html
    # and voiding it again is refused, naming the credit note, and issues nothing
    with pytest.raises(PayloadError, match=f"is void already \\(credit note {note['number']}\\)"):
        invoke(functions, {"voidInvoice": invoice.number, "reason": "again"})
    assert len(_credit_notes(account.client_id)) == 1
    # When the month is re-billed twice (a duplicate invoke) before the worker runs
    rebill = {"rebill": {"client": account.client_id, "period": "2022-10"}}
    first, second = invoke(functions, rebill), invoke(functions, rebill)
    drain(worker)
    # Then exactly one new invoice exists for October, with a new number, and the void one is kept
    current = InvoiceItem.get(invoice.account_period)
    assert current.status == "unpaid" and current.number != invoice.number
    kept = InvoiceItem.get(f"{invoice.account_period}#{invoice.number}")
    assert (kept.status, kept.number, kept.credit_note) == ("void", invoice.number, note["number"])
    invoices = [i for i in InvoiceItem.by_client.query(account.client_id) if i.outcome == "invoiced"]
    assert sorted(i.number for i in invoices) == sorted([invoice.number, current.number])
    runs = [invoke(functions, {"runStatus": r["runId"]}) for r in (first, second)]
    assert sorted((r["invoiced"], r["alreadyInvoiced"]) for r in runs) == [(0, 1), (1, 0)]
    assert all(r["finished"] for r in runs)
    # and one new invoice email went out
    assert [m.subject for m in invoice_mails(stack, account.email)][-1].startswith(
        f"Invoice {current.number}"
    )
    # and the void invoice is still found by its number; the month cannot be billed a third time
    assert invoke(functions, {"account": account.client_id})["invoices"][0]["number"] in {
        invoice.number,
        current.number,
    }
    with pytest.raises(PayloadError, match=f"already has invoice {current.number}"):
        invoke(functions, rebill)
    # and the client's page of the void invoice names its credit note, date and reason, and links the new one
    logged_in(browser, account.email)
    page = browser.get(f"/invoices/{invoice.number}")
    assert page.has(f"By credit note {note['number']} of {note['issuedOn']}: wrong plan price")
    assert page.has(f'href="/invoices/{current.number}"')


def test_credit_notes_are_a_gapless_series_of_their_own(stack, functions, worker):
    _, a = _october_invoice(stack, functions, worker)
    _, b = _october_invoice(stack, functions, worker)
    first = invoke(functions, {"voidInvoice": a.number, "reason": "r"})["creditNote"]["number"]
    second = invoke(functions, {"voidInvoice": b.number, "reason": "r"})["creditNote"]["number"]
    assert int(second[3:]) == int(first[3:]) + 1
    numbers = sorted(int(i.number[3:]) for i in InvoiceItem.scan() if i.outcome == "credit_note")
    assert numbers == list(range(1, len(numbers) + 1))


def test_voiding_the_overdue_invoice_lifts_the_suspension_it_caused(stack, functions, worker):
    account, invoice = _october_invoice(stack, functions, worker)
    make_overdue(invoice.number, days=30)
    daily(functions, date.today())
    assert solus_status(stack, account.solus_user_id) == "suspended"
    result = invoke(functions, {"voidInvoice": invoice.number, "reason": "disputed"})
    assert result["reactivated"] is True
    assert solus_status(stack, account.solus_user_id) == "active"
    assert AccountItem.get(account.email).suspended_for is None


def test_a_paid_invoice_or_an_unknown_one_is_not_voided(stack, functions, worker):
    account, invoice = _october_invoice(stack, functions, worker)
    invoke(functions, {"markPaid": invoice.number, "reference": "bank"})
    with pytest.raises(PayloadError, match=f"invoice {invoice.number} is paid, not unpaid"):
        invoke(functions, {"voidInvoice": invoice.number, "reason": "r"})
    with pytest.raises(PayloadError, match="no invoice 'INV-999999'"):
        invoke(functions, {"voidInvoice": "INV-999999", "reason": "r"})
    with pytest.raises(PayloadError, match="reason must be a non-empty string"):
        invoke(functions, {"voidInvoice": invoice.number})
    assert _credit_notes(account.client_id) == []
    # and a paid month is not billed again
    with pytest.raises(PayloadError, match="void it first"):
        invoke(functions, {"rebill": {"client": account.client_id, "period": "2022-10"}})


@pytest.mark.usefixtures("example_profile")
def test_the_credit_note_mirrors_the_invoices_amounts_and_parties(stack, functions, worker):
    # Given an October invoice with 20 % VAT, a seller and a buyer with a tax id
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    account.update(actions=[AccountItem.company.set("Engines Ltd"), AccountItem.tax_id.set("GB999999973")])
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    invoice = InvoiceItem.get(f"{account.client_id}#2022-10")
    doc = json.loads(invoice.document)
    assert (doc["tax"], doc["total"]) == ("1.64", "9.83")
    # When it is voided
    note = invoke(functions, {"voidInvoice": invoice.number, "reason": "wrong VAT"})["creditNote"]
    # Then the credit note reverses subtotal, tax and total, and keeps the invoice's seller and buyer
    assert (note["subtotal"], note["tax"], note["total"]) == ("-8.19", "-1.64", "-9.83")
    [stored] = _credit_notes(account.client_id)
    stored_doc = json.loads(stored.document)
    assert stored_doc["seller"] == doc["seller"] and stored_doc["buyer"] == doc["buyer"]
    assert stored_doc["buyer"]["tax_id"] == "GB999999973"
