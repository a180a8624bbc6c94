"""How an invoice (or a credit note) is stored: one JSON document with exact decimal strings, written once
when it is issued and read back as the domain model (the seller, buyer and tax it was issued with, whatever
changes later); and the items of a batch's invoices and nothing-to-bill records."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from postpay.adapters.tables import InvoiceItem
from postpay.models import (
    Buyer,
    CarriedBalance,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Seller,
    ToIssue,
)


def account_period(client_id: int, period_key: str) -> str:
    return f"{client_id}#{period_key}"


def _dec(value: Decimal) -> str:
    return format(value, "f")


def _seller_doc(seller: Seller | None) -> dict[str, Any] | None:
    if seller is None:
        return None
    return {
        "name": seller.name,
        "address": list(seller.address),
        "tax_id": seller.tax_id,
        "email": seller.email,
        "website": seller.website,
        "logo": seller.logo,
    }


def _buyer_doc(buyer: Buyer | None) -> dict[str, Any] | None:
    if buyer is None:
        return None
    return {
        "name": buyer.name,
        "company": buyer.company,
        "email": buyer.email,
        "address": list(buyer.address),
        "tax_id": buyer.tax_id,
    }


def _seller(doc: dict[str, Any] | None) -> Seller | None:
    if not doc:
        return None
    return Seller(
        name=doc["name"],
        address=tuple(doc.get("address") or ()),
        tax_id=doc.get("tax_id", ""),
        email=doc.get("email", ""),
        website=doc.get("website", ""),
        logo=doc.get("logo", ""),
    )


def _buyer(doc: dict[str, Any] | None) -> Buyer | None:
    if not doc:
        return None
    return Buyer(
        name=doc["name"],
        company=doc.get("company", ""),
        email=doc.get("email", ""),
        address=tuple(doc.get("address") or ()),
        tax_id=doc.get("tax_id", ""),
    )


def invoice_document(invoice: Invoice) -> str:
    return json.dumps(
        {
            "seller": _seller_doc(invoice.seller),
            "buyer": _buyer_doc(invoice.buyer),
            "tax_rate": _dec(invoice.tax_rate),
            "tax_label": invoice.tax_label,
            "tax_inclusive": invoice.tax_inclusive,
            "reverse_charge": invoice.reverse_charge,
            "tax": _dec(invoice.tax),
            "payment_instructions": invoice.payment_instructions,
            "number": invoice.number,
            "client_id": invoice.client_id,
            "email": invoice.email,
            "solus_user_id": invoice.solus_user_id,
            "period_start": invoice.period_start.isoformat(),
            "period_end": invoice.period_end.isoformat(),
            "timezone": invoice.timezone,
            "currency": invoice.currency,
            "token_price": _dec(invoice.token_price),
            "total": _dec(invoice.total),
            "issued_on": invoice.issued_on.isoformat(),
            "due_on": invoice.due_on.isoformat(),
            "run_id": invoice.run_id,
            "lines": [
                {
                    "server_id": ln.server_id,
                    "name": ln.name,
                    "plan": ln.plan,
                    "hours": ln.hours,
                    "tokens": ln.tokens,
                    "unit_price": _dec(ln.unit_price),
                    "amount": _dec(ln.amount),
                    "deleted": ln.deleted,
                }
                for ln in invoice.lines
            ],
            # only when there are some: an invoice without stores the same document as before
            **(
                {"carried_in": [{"number": c.number, "amount": _dec(c.amount)} for c in invoice.carried_in]}
                if invoice.carried_in
                else {}
            ),
        },
        sort_keys=True,
    )


def to_invoice(item: InvoiceItem) -> Invoice:
    doc = json.loads(item.document or "{}")
    return Invoice(
        number=doc["number"],
        client_id=doc["client_id"],
        email=doc["email"],
        solus_user_id=doc["solus_user_id"],
        period_start=date.fromisoformat(doc["period_start"]),
        period_end=date.fromisoformat(doc["period_end"]),
        timezone=doc["timezone"],
        currency=doc["currency"],
        token_price=Decimal(doc["token_price"]),
        lines=tuple(
            InvoiceLine(
                server_id=ln["server_id"],
                name=ln["name"],
                plan=ln["plan"],
                hours=ln["hours"],
                tokens=ln["tokens"],
                unit_price=Decimal(ln["unit_price"]),
                amount=Decimal(ln["amount"]),
                deleted=ln["deleted"],
            )
            for ln in doc["lines"]
        ),
        total=Decimal(doc["total"]),
        status=InvoiceStatus(item.status),
        issued_on=date.fromisoformat(doc["issued_on"]),
        due_on=date.fromisoformat(doc["due_on"]),
        usage=item.usage,
        run_id=doc["run_id"],
        paid_at=item.paid_at,
        payment_reference=item.payment_reference,
        # Invoices issued before seller, buyer and tax were recorded have none of these: no tax.
        seller=_seller(doc.get("seller")),
        buyer=_buyer(doc.get("buyer")),
        tax_rate=Decimal(doc.get("tax_rate", "0")),
        tax_label=doc.get("tax_label", ""),
        tax_inclusive=bool(doc.get("tax_inclusive", False)),
        reverse_charge=bool(doc.get("reverse_charge", False)),
        tax=Decimal(doc.get("tax", "0")),
        payment_instructions=doc.get("payment_instructions", ""),
        carried_in=tuple(
            CarriedBalance(number=c["number"], amount=Decimal(c["amount"])) for c in doc.get("carried_in", ())
        ),
        carried_to=item.carried_to,
    )


def credit_note_document(note: CreditNote) -> str:
    return json.dumps(
        {
            "number": note.number,
            "invoice_number": note.invoice_number,
            "client_id": note.client_id,
            "email": note.email,
            "period_start": note.period_start.isoformat(),
            "period_end": note.period_end.isoformat(),
            "currency": note.currency,
            "subtotal": _dec(note.subtotal),
            "tax": _dec(note.tax),
            "total": _dec(note.total),
            "issued_on": note.issued_on.isoformat(),
            "reason": note.reason,
            "seller": _seller_doc(note.seller),
            "buyer": _buyer_doc(note.buyer),
        },
        sort_keys=True,
    )


def to_credit_note(item: InvoiceItem) -> CreditNote:
    doc = json.loads(item.document or "{}")
    return CreditNote(
        number=doc["number"],
        invoice_number=doc["invoice_number"],
        client_id=doc["client_id"],
        email=doc["email"],
        period_start=date.fromisoformat(doc["period_start"]),
        period_end=date.fromisoformat(doc["period_end"]),
        currency=doc["currency"],
        subtotal=Decimal(doc["subtotal"]),
        tax=Decimal(doc["tax"]),
        total=Decimal(doc["total"]),
        issued_on=date.fromisoformat(doc["issued_on"]),
        reason=doc["reason"],
        seller=_seller(doc.get("seller")),
        buyer=_buyer(doc.get("buyer")),
    )


def invoice_item(invoice: Invoice, *, run_id: str, now: datetime, lease: timedelta) -> InvoiceItem:
    """How one invoice is stored (its email leased to the attempt that issued it)."""
    return InvoiceItem(
        account_period(invoice.client_id, invoice.period_key),
        client_id=invoice.client_id,
        period_key=invoice.period_key,
        outcome="invoiced",
        email=invoice.email,
        run_id=run_id,
        usage=invoice.usage,
        created_at=now,
        number=invoice.number,
        status=invoice.status.value,
        due_on=invoice.due_on.isoformat(),
        document=invoice_document(invoice),
        email_lease_until=int((now + lease).timestamp()),
    )


def nothing_item(entry: ToIssue, *, now: datetime) -> InvoiceItem:
    """The record that (client, period) had nothing to bill."""
    return InvoiceItem(
        entry.key,
        client_id=entry.client_id,
        period_key=entry.period_key,
        outcome="nothing_to_bill",
        email=entry.email,
        run_id=entry.run_id,
        usage=entry.usage,
        created_at=now,
    )
