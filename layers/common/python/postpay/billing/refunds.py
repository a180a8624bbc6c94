"""Refunds of invoices paid by card, exactly once.

A refund is claimed in the payments store before the gateway is asked (its number among the invoice's refunds,
amount, reason, pending, under a lease), and its idempotency key is that number: a payload retried after a
crash finishes that refund, found at the gateway by its key first, whatever charge.refunded recorded in
between; the claim's condition keeps every refund within what was paid.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from postpay import money
from postpay.clock import Clock
from postpay.models import Invoice, InvoiceStatus
from postpay.observability import logger
from postpay.payments import GatewayRefused, NotPayable, PendingRefund, minor_units, refund_key

if TYPE_CHECKING:
    from postpay.ports import PaymentGateway, PaymentsStore

# Longer than a refund's gateway calls with their retries (a look-up and a refund: no more than a charge's,
# whose lease is as long: postpay.billing.collection.CHARGE_LEASE).
REFUND_LEASE = timedelta(minutes=3)
# A refund's claim is written on a read of the refunded totals; a charge.refunded event landing in between
# fails the write, which is then made again on a fresh read.
REFUND_CLAIM_TRIES = 3


class Refunds:
    def __init__(
        self,
        *,
        payments: PaymentsStore,
        gateway: PaymentGateway,
        clock: Clock,
        on_refunded: Callable[[Invoice, int], object] | None = None,
    ) -> None:
        self.payments = payments
        self.gateway = gateway
        self.clock = clock
        # Told once per refund (its amount in minor units), by the payload that recorded its answer.
        self.on_refunded = on_refunded

    def refund(self, invoice: Invoice, amount: Decimal | None, reason: str) -> dict[str, str]:
        """The operator's refund of an invoice paid by card: all that is left (``amount`` None) or part, never
        more than was paid. The refund is claimed in the payments store (its number, amount and reason,
        pending) before the gateway is asked, and its idempotency key is its number: the same payload
        retried after a crash finishes that refund, whatever charge.refunded recorded in between; another
        amount while it is pending is refused. Raises NotPayable with the reason it is refused."""
        reference = invoice.payment_reference or ""
        if invoice.status is not InvoiceStatus.PAID or not reference.startswith("card "):
            raise NotPayable(f"invoice {invoice.number} is not paid by card: refund a transfer by transfer")
        intent_id = reference.removeprefix("card ")
        asked = None if amount is None else minor_units(amount, invoice.currency)
        claim = self._claim_refund(invoice, asked, reason)
        key = refund_key(invoice.number, claim.seq)
        # Looked up first: Stripe forgets an idempotency key after a day (and localstripe ignores them).
        refunded = self.gateway.find_refund(intent_id=intent_id, key=key)
        if refunded is None:
            try:
                refunded = self.gateway.refund(
                    intent_id=intent_id, amount_minor=claim.amount_minor, reason=claim.reason, key=key
                )
            except GatewayRefused:
                self.payments.release_refund(invoice.number, claim.seq)  # nothing was made: free it
                raise
        now = self.clock.now()
        # Stripe's total is now at least what this refund was claimed on plus it (a refund in its dashboard
        # included): recorded before the claim ends, so a crash in between leaves it pending, not uncounted.
        self.payments.record_refund(invoice.number, claim.refunded_before + refunded, now)
        first = self.payments.finish_refund(invoice.number, claim.seq, refunded, now)
        logger.info(
            "refunded", extra={"invoice": invoice.number, "refund": claim.seq, "amount_minor": refunded}
        )
        if first and self.on_refunded is not None:
            self.on_refunded(invoice, refunded)
        record = self.payments.charge_of(invoice.number)
        total = record.refunded_total if record is not None else refunded
        return {
            "invoice": invoice.number,
            "refund": str(claim.seq),
            "amount": self._decimal(refunded, invoice.currency),
            "refunded": self._decimal(total, invoice.currency),
            "currency": invoice.currency,
            "reason": claim.reason,
        }

    def _claim_refund(self, invoice: Invoice, asked: int | None, reason: str) -> PendingRefund:
        """The refund this payload is: the pending one it retries, or a new one claimed now."""
        paid = minor_units(invoice.total, invoice.currency)
        for _ in range(REFUND_CLAIM_TRIES):
            record = self.payments.charge_of(invoice.number)
            pending = record.pending_refund if record is not None else None
            if pending is not None:
                if not ((asked is None and pending.whole) or asked == pending.amount_minor):
                    raise NotPayable(self._pending_message(invoice, pending))
                if not self.payments.take_refund(invoice.number, pending.seq, self.clock.now(), REFUND_LEASE):
                    until = datetime.fromtimestamp(pending.lease_until, UTC).isoformat()
                    raise NotPayable(
                        f"refund {pending.seq} of invoice {invoice.number} may be at the gateway right now: "
                        f"send the payload again after {until}"
                    )
                return pending
            refunded = record.refunded_total if record is not None else 0
            wanted = paid - refunded if asked is None else asked
            if wanted <= 0 or wanted > paid - refunded:
                left = self._decimal(paid - refunded, invoice.currency)
                raise NotPayable(f"invoice {invoice.number} has {left} {invoice.currency} left to refund")
            now = self.clock.now()
            claim = PendingRefund(
                seq=(record.refund_seq if record is not None else 0) + 1,
                amount_minor=wanted,
                whole=asked is None,
                reason=reason,
                claimed_at=now,
                refunded_before=refunded,
            )
            if self.payments.claim_refund(
                invoice.number, claim, refunded_at_most=paid - wanted, now=now, lease=REFUND_LEASE
            ):
                return claim
        raise NotPayable(
            f"invoice {invoice.number}'s refunds changed while this one was claimed: send the payload again"
        )

    def _pending_message(self, invoice: Invoice, pending: PendingRefund) -> str:
        amount = self._decimal(pending.amount_minor, invoice.currency)
        payload = (
            f'{{"refund": "{invoice.number}"' + ("" if pending.whole else f', "amount": "{amount}"') + "}"
        )
        since = f" since {pending.claimed_at.isoformat()}" if pending.claimed_at else ""
        return (
            f"refund {pending.seq} of invoice {invoice.number} ({amount} {invoice.currency}, "
            f"{pending.reason!r}) is pending{since}: its answer from the gateway was not recorded. "
            f"Send {payload} to finish it (it is not refunded twice), then ask for this one"
        )

    @staticmethod
    def _decimal(minor: int, currency: str) -> str:
        return str(Decimal(minor).scaleb(-money.minor_unit(currency)))
