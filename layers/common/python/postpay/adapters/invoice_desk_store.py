"""DynamoDB for the operator's desk on invoices: voiding with a credit note (its own gapless series), the
credit notes, an invoice's history, and the operator's listings. A base of BillingStore, so the logic keeps
one invoice-store port; credit notes and void invoices a re-bill replaced live in the invoices table under
longer keys ("<client>#<YYYY-MM>#<number>"), so they are listed with the client's invoices.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from postpay.adapters.invoice_documents import (
    account_period,
    credit_note_document,
    to_credit_note,
    to_invoice,
)
from postpay.adapters.tables import CounterItem, InvoiceItem, conditional_failed, connection
from postpay.models import CreditNote, Invoice, InvoiceStatus

CREDIT_NOTE_COUNTER = "credit_note_number"  # credit notes are their own gapless series
MAX_VOID_ATTEMPTS = 50


def _not_unpaid(item: InvoiceItem) -> str:
    if item.status == InvoiceStatus.VOID.value:
        return f"invoice {item.number} is void already (credit note {item.credit_note})"
    if item.status == InvoiceStatus.CARRIED.value and item.carried_to:
        return (
            f"invoice {item.number} was carried to {item.carried_to}: its total is billed there"
            f" (pay or void {item.carried_to} instead)"
        )
    return f"invoice {item.number} is {item.status}, not unpaid"


def _open(item: InvoiceItem) -> bool:
    """Unpaid, or carried and not yet taken by a later invoice: what a payment or a void may settle."""
    return item.status == InvoiceStatus.UNPAID.value or (
        item.status == InvoiceStatus.CARRIED.value and not item.carried_to
    )


# The database's form of _open: the condition a payment or a void is written under.
_OPEN = (InvoiceItem.status == InvoiceStatus.UNPAID.value) | (
    (InvoiceItem.status == InvoiceStatus.CARRIED.value) & InvoiceItem.carried_to.does_not_exist()
)


def _counter(name: str) -> int:
    try:
        return int(CounterItem.get(name, consistent_read=True).value or 0)
    except CounterItem.DoesNotExist:
        return 0


def _cancel_codes(error: TransactWriteError) -> list[str | None]:
    return [reason.code if reason else None for reason in (error.cancellation_reasons or [])]


class InvoiceDeskStore:
    """What the operator's commands read and write on invoices once issued: payments, voids, history."""

    def _invoice_item(self, number: str) -> InvoiceItem | None:
        """The issued invoice with this number (not a credit note), current or void."""
        if not number:  # DynamoDB refuses an empty key value: there is no such invoice
            return None
        for key in InvoiceItem.by_number.query(number):
            item = InvoiceItem.get(key.account_period, consistent_read=True)
            if item.outcome == "invoiced" and item.number == number:
                return item
        return None

    def credit_notes(
        self, *, period_key: str | None = None, client_id: int | None = None
    ) -> list[CreditNote]:
        items: Any
        if client_id is not None:
            items = InvoiceItem.by_client.query(client_id)
        else:
            items = InvoiceItem.scan(InvoiceItem.outcome == "credit_note")
        return [
            to_credit_note(item)
            for item in items
            if item.outcome == "credit_note" and (period_key is None or item.period_key == period_key)
        ]

    def void(
        self,
        number: str,
        *,
        reason: str,
        now: datetime,
        credit_note_for: Callable[[int, Invoice], CreditNote],
    ) -> tuple[Invoice, CreditNote]:
        """unpaid (or carried, not yet taken) -> void, with its credit note (the next number of its own
        series), in one transaction: two voids of one invoice issue one credit note. The balances the
        invoice carried in are carried again in that transaction (each carried invoice is open once more,
        for the client's next invoice), conditioned on this invoice having taken them: a void releases a
        balance once. ``credit_note_for(number, invoice)`` builds the note.
        Raises LookupError (unknown number) or ValueError (not unpaid)."""
        item = self._invoice_item(number)
        if item is None:
            raise LookupError(number)
        if not _open(item):
            raise ValueError(_not_unpaid(item))
        invoice = to_invoice(item)
        current = _counter(CREDIT_NOTE_COUNTER)
        for _attempt in range(MAX_VOID_ATTEMPTS):
            note = credit_note_for(current + 1, invoice)
            try:
                with TransactWrite(connection=connection()) as tx:
                    tx.save(
                        InvoiceItem(
                            f"{item.account_period}#{note.number}",
                            client_id=note.client_id,
                            period_key=note.period_key,
                            outcome="credit_note",
                            email=note.email,
                            run_id=f"void-{invoice.number}",
                            usage="{}",
                            created_at=now,
                            number=note.number,
                            document=credit_note_document(note),
                        ),
                        condition=InvoiceItem.account_period.does_not_exist(),
                    )
                    tx.update(
                        CounterItem(CREDIT_NOTE_COUNTER),
                        actions=[CounterItem.value.set(current + 1)],
                        condition=CounterItem.value == current
                        if current
                        else CounterItem.name.does_not_exist(),
                    )
                    tx.update(
                        InvoiceItem(item.account_period),
                        actions=[
                            InvoiceItem.status.set(InvoiceStatus.VOID.value),
                            InvoiceItem.void_reason.set(reason),
                            InvoiceItem.voided_at.set(now),
                            InvoiceItem.credit_note.set(note.number),
                        ],
                        condition=_OPEN & (InvoiceItem.number == number),
                    )
                    for carried in invoice.carried_in:  # carried again, for the next invoice
                        waiting = self._carried_item(invoice.client_id, carried.number)
                        tx.update(
                            InvoiceItem(waiting.account_period),
                            # back in the status index, where the next invoice looks for balances waiting
                            actions=[
                                InvoiceItem.carried_to.remove(),
                                InvoiceItem.due_on.set(to_invoice(waiting).due_on.isoformat()),
                            ],
                            condition=(InvoiceItem.status == InvoiceStatus.CARRIED.value)
                            & (InvoiceItem.carried_to == number),
                        )
            except TransactWriteError as error:
                codes = _cancel_codes(error) + [None] * 3  # puts, then updates: [note, counter, invoice]
                if codes[2] == "ConditionalCheckFailed":
                    raise ValueError(
                        _not_unpaid(InvoiceItem.get(item.account_period, consistent_read=True))
                    ) from error
                if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
                    current = _counter(CREDIT_NOTE_COUNTER)
                    continue
                raise
            return to_invoice(InvoiceItem.get(item.account_period, consistent_read=True)), note
        raise RuntimeError(f"could not allocate a credit note number after {MAX_VOID_ATTEMPTS} attempts")

    def _carried_item(self, client_id: int, number: str) -> InvoiceItem:
        """The client's carried invoice with this number (never void while taken: at its (client, period))."""
        item = self._invoice_item(number)
        if item is None or item.client_id != client_id:
            raise RuntimeError(f"carried invoice {number} of client {client_id} not found")
        return item

    def mark_credit_note_emailed(self, note: CreditNote, message_id: str, now: datetime) -> None:
        InvoiceItem(account_period(note.client_id, note.period_key) + f"#{note.number}").update(
            actions=[InvoiceItem.email_sent_at.set(now), InvoiceItem.email_message_id.set(message_id)]
        )

    def invoice_history(self, number: str) -> list[dict[str, Any]]:
        for key in InvoiceItem.by_number.query(number):
            item = InvoiceItem.get(key.account_period, consistent_read=True)
            return [json.loads(str(entry)) for entry in item.history or []]
        return []

    def add_history(self, invoice: Invoice, entry: dict[str, Any]) -> None:
        """Appends one entry to the invoice's history (an update: concurrent entries are all kept). Found by
        its number: a void invoice a re-bill replaced is kept under a longer key than (client, period)."""
        item = self._invoice_item(invoice.number)
        key = (
            item.account_period if item is not None else account_period(invoice.client_id, invoice.period_key)
        )
        InvoiceItem(key).update(
            actions=[
                InvoiceItem.history.set(
                    (InvoiceItem.history | []).append([json.dumps(entry, sort_keys=True)])  # type: ignore[operator]
                )
            ],
            condition=(InvoiceItem.outcome == "invoiced") & (InvoiceItem.number == invoice.number),
        )

    def find_invoices(
        self,
        *,
        status: str | None,
        period_key: str | None,
        client_id: int | None,
        due_before: date | None = None,
    ) -> list[Invoice]:
        """Every invoice matching the filters (each optional), read through the narrowest index.
        An operator's listing: it reads the matching invoices, so a page costs as much as the filter."""
        items: Iterator[InvoiceItem]
        if client_id is not None:
            condition = InvoiceItem.period_key == period_key if period_key else None
            items = InvoiceItem.by_client.query(client_id, condition)
        elif status is not None:
            items = InvoiceItem.by_status.query(status)
        else:
            items = InvoiceItem.scan(InvoiceItem.outcome == "invoiced")
        return [
            to_invoice(item)
            for item in items
            if item.outcome == "invoiced"
            and (status is None or item.status == status)
            # "carried" lists the balances waiting for an invoice; a taken one is listed by client
            and not (status == InvoiceStatus.CARRIED.value and item.carried_to)
            and (period_key is None or item.period_key == period_key)
            and (due_before is None or (item.due_on or "") < due_before.isoformat())
        ]

    def mark_paid(self, number: str, reference: str, now: datetime) -> Invoice:
        """unpaid (or carried, not yet taken) -> paid, once. Raises LookupError (unknown number) or
        ValueError (not unpaid)."""
        keys = list(InvoiceItem.by_number.query(number))
        if not keys:
            raise LookupError(number)
        item = InvoiceItem(keys[0].account_period)
        try:
            item.update(
                actions=[
                    InvoiceItem.status.set(InvoiceStatus.PAID.value),
                    InvoiceItem.paid_at.set(now),
                    InvoiceItem.payment_reference.set(reference),
                ],
                condition=_OPEN,
            )
        except UpdateError as error:
            if conditional_failed(error):
                current = InvoiceItem.get(keys[0].account_period, consistent_read=True)
                raise ValueError(_not_unpaid(current)) from error
            raise
        return to_invoice(InvoiceItem.get(keys[0].account_period, consistent_read=True))
