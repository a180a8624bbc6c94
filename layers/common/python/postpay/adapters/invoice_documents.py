"""How an invoice is stored: one JSON document with exact decimal strings, written once when it is issued
and read back as the domain model (the seller, buyer and tax it was issued with, whatever changes later)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from postpay.adapters.tables import InvoiceItem
from postpay.models import Buyer, Invoice, InvoiceLine, InvoiceStatus, Seller


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
    )
