"""A month's invoices and credit notes as CSV, for the accountant."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import Decimal

from postpay.models import CreditNote, Invoice

COLUMNS = [
    "type",
    "number",
    "issued_on",
    "due_on",
    "period",
    "client",
    "company",
    "tax_id",
    "subtotal",
    "tax",
    "total",
    "currency",
    "status",
    "invoice",
    "refunded",
    "carried_in",  # balances of earlier invoices in the total, after tax: subtotal + tax + carried_in = total
    "carried_to",  # a carried invoice: the invoice its total went into (empty until that is issued)
]


def invoices_csv(
    invoices: list[Invoice],
    credit_notes: list[CreditNote],
    company_of: Callable[[int], str],
    refunded_of: Callable[[Invoice], Decimal],
) -> str:
    """One row per invoice (void ones included: their credit note cancels them) and per credit note, in
    number order. Amounts are exact decimal strings. Company and tax id are the buyer as the document
    printed it; a document issued before buyers were recorded takes the account's company of today.
    ``refunded``: what was refunded of an invoice's card payment (income is its total less that); empty on a
    credit note."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for invoice in sorted(invoices, key=lambda i: (len(i.number), i.number)):
        writer.writerow(
            [
                "invoice",
                invoice.number,
                invoice.issued_on.isoformat(),
                invoice.due_on.isoformat(),
                invoice.period_key,
                invoice.client_id,
                _cell(invoice.buyer.company if invoice.buyer else company_of(invoice.client_id)),
                _cell(invoice.buyer.tax_id if invoice.buyer else ""),
                _money(invoice.subtotal),
                _money(invoice.tax),
                _money(invoice.total),
                invoice.currency,
                invoice.status.value,
                "",
                _money(refunded_of(invoice)),
                _money(invoice.carried_total) if invoice.carried_in else "",
                invoice.carried_to or "",
            ]
        )
    for note in sorted(credit_notes, key=lambda n: (len(n.number), n.number)):
        writer.writerow(
            [
                "credit_note",
                note.number,
                note.issued_on.isoformat(),
                "",
                note.period_key,
                note.client_id,
                _cell(note.buyer.company if note.buyer else company_of(note.client_id)),
                _cell(note.buyer.tax_id if note.buyer else ""),
                _money(note.subtotal),
                _money(note.tax),
                _money(note.total),
                note.currency,
                "issued",
                note.invoice_number,
                "",
                "",
                "",
            ]
        )
    return out.getvalue()


def _money(value: Decimal) -> str:
    return format(value, "f")


def _cell(text: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ as a formula: a company name must stay text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
