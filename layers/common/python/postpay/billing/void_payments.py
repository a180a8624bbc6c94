"""Card payments and void invoices: no payment may start or finish on an invoice once it is void.

Before the operator's void, what is under way is settled (Collection.before_void): a charge being made holds
the void for its few minutes, a PaymentIntent waiting for 3-D Secure is cancelled at the gateway. What no
check can prevent (a Pay now pressed while the void is written, a webhook delivered days late) is refunded in
full where the payment is reported, once per PaymentIntent, and the client told.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from postpay import money
from postpay.models import Invoice
from postpay.observability import logger, metrics
from postpay.payments import ChargeResult, NotPayable, void_refund_key

if TYPE_CHECKING:
    from postpay.clock import Clock
    from postpay.config import Settings
    from postpay.ports import InvoiceDesk, Mailer, PaymentGateway, PaymentsStore

# The invoice history's entry of a payment on a void invoice; the operator's refund reads it back.
VOID_PAYMENT_EVENT = "card payment on the void invoice"


class ChargeInFlight(Exception):
    """The invoice cannot be voided now: a card payment of it is being made; the message says which."""


class VoidPayments:
    """Collection's part for void invoices (a base of postpay.billing.collection.Collection)."""

    settings: Settings
    payments: PaymentsStore
    gateway: PaymentGateway
    invoices: InvoiceDesk
    mailer: Mailer
    clock: Clock

    def paid(self, number: str, intent_id: str) -> str:
        raise NotImplementedError  # Collection's: unpaid -> paid, or refund_void_payment on a void invoice

    def before_void(self, invoice: Invoice) -> None:
        """What the operator's void needs of the card first, so no payment can start or finish on the void
        invoice: a charge being made right now is waited for (ChargeInFlight); a PaymentIntent waiting for
        the client's 3-D Secure (the recorded one, or the one a try that never finished left at the
        gateway) is cancelled there. One that won the race pays the invoice, and the void is then refused
        as for any paid invoice; one still processing holds the void (ChargeInFlight)."""
        record = self.payments.charge_of(invoice.number)
        if record is None:
            return
        intent_id = record.intent_id if record.outcome in ("requires_action", "processing") else None
        if record.outcome is None:
            if record.lease_until >= int(self.clock.now().timestamp()):
                raise ChargeInFlight(
                    f"invoice {invoice.number} is being charged to the client's card right now: "
                    "void it once the charge has an outcome, in a few minutes"
                )
            # a try that never finished: what it left at the gateway, if anything
            on_file = self.payments.card_on_file(invoice.client_id)
            found = (
                self.gateway.find_charge(
                    customer=on_file.customer, invoice_number=invoice.number, attempt=record.attempt
                )
                if on_file is not None and on_file.customer
                else None
            )
            intent_id = found.intent_id if found is not None else None
        if not intent_id:
            return
        current = self.gateway.cancel_charge(intent_id)
        if current.status == "succeeded":
            self.paid(invoice.number, intent_id)  # the void then finds it paid and refuses
            self.payments.record_charge(invoice.number, record.attempt, current, self.clock.now())
            return
        if current.status == "processing":
            raise ChargeInFlight(
                f"a card payment of invoice {invoice.number} is processing at the gateway: "
                "void it once it has an outcome"
            )
        reason = "cancelled: the invoice was voided" if current.status == "canceled" else current.reason
        self.payments.record_charge(
            invoice.number,
            record.attempt,
            ChargeResult(intent_id=intent_id, status="failed", reason=reason),
            self.clock.now(),
        )
        logger.info(
            "card payment cancelled before a void",
            extra={"invoice": invoice.number, "status": current.status},
        )

    def refund_void_payment(self, invoice: Invoice, intent_id: str) -> int:
        """A payment that succeeded on a void invoice (3-D Secure finished after the void, a charge or its
        webhook late): recorded once (the payments table, the invoice's history, an error log and the
        PaymentsOnVoidInvoices metric the alarm watches), then refunded in full under a key of the invoice
        and the PaymentIntent, so a replayed webhook or a second path refunds nothing twice; the client is
        emailed once, by the call whose record of the refund is the first. Returns what was refunded.
        A gateway error propagates: the webhook is answered 5xx and Stripe delivers it again."""
        now = self.clock.now()
        charge = self.gateway.get_charge(intent_id)
        if charge.invoice_number not in (None, invoice.number) or charge.status != "succeeded":
            logger.warning(
                "a void invoice's reported payment is not a payment of it",
                extra={"invoice": invoice.number, "status": charge.status},
            )
            return 0
        amount = charge.amount_minor or 0
        if self.payments.record_void_payment(invoice.number, intent_id, amount, now):
            metrics.add_metric(name="PaymentsOnVoidInvoices", unit="Count", value=1)
            logger.error(
                "card payment on a void invoice: refunding it in full",
                extra={
                    "invoice": invoice.number,
                    "client_id": invoice.client_id,
                    "payment_intent": intent_id,
                    "amount_minor": amount,
                    "currency": invoice.currency,
                },
            )
            self.invoices.add_history(
                invoice,
                {
                    "at": now.isoformat(),
                    "event": VOID_PAYMENT_EVENT,
                    "paymentIntent": intent_id,
                    "amount": _amount(amount, invoice.currency),
                },
            )
        recorded = self.payments.void_payment(intent_id)
        if recorded is not None and recorded.refunded_minor is not None:
            return recorded.refunded_minor  # refunded already: a replay, or the other path got here first
        refunded = self.gateway.refund(
            intent_id=intent_id,
            amount_minor=amount,
            reason=f"invoice {invoice.number} was void when the payment succeeded",
            key=void_refund_key(invoice.number, intent_id),
        )
        if not self.payments.mark_void_payment_refunded(intent_id, refunded, self.clock.now()):
            return refunded
        record = self.payments.charge_of(invoice.number)
        if record is not None and record.intent_id == intent_id:
            self.payments.record_refund(invoice.number, refunded, self.clock.now())
        self.invoices.add_history(
            invoice,
            {
                "at": self.clock.now().isoformat(),
                "event": "card payment refunded: the invoice is void",
                "paymentIntent": intent_id,
                "amount": _amount(refunded, invoice.currency),
            },
        )
        logger.info(
            "void invoice's payment refunded", extra={"invoice": invoice.number, "amount_minor": refunded}
        )
        # once: only the call that recorded the refund (a crash right after that write loses the email)
        self.mailer.send(
            invoice.email,
            "payment_refunded",
            invoice=invoice,
            amount=_amount(refunded, invoice.currency),
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
        )
        return refunded

    def _refund_void_invoice(self, invoice: Invoice, amount: Decimal | None, reason: str) -> dict[str, str]:
        """The operator's refund on a void invoice: its card payments are refunded in full automatically;
        this finishes any whose automatic refund failed (the same record and key, so nothing twice)."""
        if amount is not None:
            raise NotPayable(
                f"invoice {invoice.number} is void: its card payments are refunded in full, leave amount out"
            )
        intents = [
            str(entry["paymentIntent"])
            for entry in self.invoices.invoice_history(invoice.number)
            if entry.get("event") == VOID_PAYMENT_EVENT and entry.get("paymentIntent")
        ]
        if not intents:
            raise NotPayable(f"invoice {invoice.number} is void and no card payment on it is recorded")
        refunded = sum(self.refund_void_payment(invoice, intent) for intent in dict.fromkeys(intents))
        return {
            "invoice": invoice.number,
            "status": invoice.status.value,
            "refunded": str(Decimal(refunded).scaleb(-money.minor_unit(invoice.currency))),
            "currency": invoice.currency,
            "reason": reason,
        }


def _amount(minor: int, currency: str) -> str:
    return f"{Decimal(minor).scaleb(-money.minor_unit(currency))} {currency}"
