"""DynamoDB reads of issued invoices (by (client, period), number, client, status) and their email's
lease: a base of BillingStore, which issues them (and of it the operator's desk, InvoiceDeskStore)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

from pynamodb.exceptions import UpdateError

from postpay.adapters.invoice_desk_store import InvoiceDeskStore
from postpay.adapters.invoice_documents import account_period, to_invoice
from postpay.adapters.tables import InvoiceItem, conditional_failed
from postpay.models import Invoice, InvoiceStatus


class InvoiceReads(InvoiceDeskStore):
    """What the logic reads of issued invoices, and the invoice email's claim and record."""

    # reading ---------------------------------------------------------------------------------------

    def billed(self, client_id: int, period_key: str) -> tuple[str, Invoice | None] | None:
        """("invoiced", invoice) / ("nothing_to_bill", None) for (client, period), or None."""
        try:
            item = InvoiceItem.get(account_period(client_id, period_key), consistent_read=True)
        except InvoiceItem.DoesNotExist:
            return None
        return (item.outcome, to_invoice(item) if item.outcome == "invoiced" else None)

    def invoice_by_number(self, number: str) -> Invoice | None:
        item = self._invoice_item(number)
        return to_invoice(item) if item is not None else None

    def _void_here(self, key: str) -> InvoiceItem | None:
        """The void invoice at (client, period) a re-bill would replace, if that is what is there."""
        try:
            item = InvoiceItem.get(key, consistent_read=True)
        except InvoiceItem.DoesNotExist:
            return None
        return item if item.outcome == "invoiced" and item.status == InvoiceStatus.VOID.value else None

    def invoice_of(self, client_id: int, number: str) -> Invoice | None:
        """The client's invoice with that number, in one read (another client's invoice is not found)."""
        for item in InvoiceItem.by_client.query(
            client_id, filter_condition=(InvoiceItem.number == number) & (InvoiceItem.outcome == "invoiced")
        ):
            return to_invoice(item)
        return None

    def invoices_of(self, client_id: int) -> list[Invoice]:
        return [
            to_invoice(item)
            for item in InvoiceItem.by_client.query(client_id, scan_index_forward=False)
            if item.outcome == "invoiced"
        ]

    def unpaid_due_before(self, day: date) -> Iterator[Invoice]:
        for item in InvoiceItem.by_status.query(
            InvoiceStatus.UNPAID.value, InvoiceItem.due_on < day.isoformat()
        ):
            yield to_invoice(item)

    # email and payment -----------------------------------------------------------------------------

    def claim_email(self, invoice: Invoice, now: datetime, lease: timedelta) -> str:
        """Takes the right to send the invoice email. Returns "claimed", "sent" (nothing to do) or "leased"
        (another attempt holds a live lease: it may be sending right now, so this one must not)."""
        key = account_period(invoice.client_id, invoice.period_key)
        try:
            InvoiceItem(key).update(
                actions=[InvoiceItem.email_lease_until.set(int((now + lease).timestamp()))],
                condition=InvoiceItem.email_sent_at.does_not_exist()
                & (
                    InvoiceItem.email_lease_until.does_not_exist()
                    | (InvoiceItem.email_lease_until < int(now.timestamp()))
                ),
            )
        except UpdateError as error:
            if not conditional_failed(error):
                raise
            item = InvoiceItem.get(
                key, consistent_read=True, attributes_to_get=["account_period", "email_sent_at"]
            )
            return "sent" if item.email_sent_at is not None else "leased"
        return "claimed"

    def mark_emailed(self, invoice: Invoice, message_id: str, now: datetime) -> None:
        InvoiceItem(account_period(invoice.client_id, invoice.period_key)).update(
            actions=[
                InvoiceItem.email_sent_at.set(now),
                InvoiceItem.email_message_id.set(message_id),
                InvoiceItem.email_lease_until.remove(),
            ]
        )
