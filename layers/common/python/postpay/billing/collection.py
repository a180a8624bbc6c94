"""Collection: charging an issued invoice to the client's card on file, exactly once.

The order of steps is what makes it once: claim the attempt in our table (conditional write), then look for a
PaymentIntent of that invoice and attempt at the gateway (a crash after creating it), and only if there is
none create one under the attempt's idempotency key; then record the outcome. A duplicate job finds the claim
and stops; a job killed anywhere is redelivered and, once the lease has expired, finds what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from postpay import money
from postpay.billing.refunds import Refunds
from postpay.billing.void_payments import VoidPayments
from postpay.clock import Clock
from postpay.config import Settings
from postpay.models import Invoice, InvoiceStatus
from postpay.observability import logger, metrics
from postpay.payments import (
    Card,
    CardNotSaved,
    ChargeRecord,
    ChargeResult,
    GatewayError,
    GatewayRefused,
    NotPayable,
    PaymentEvent,
    chargeable,
    minor_units,
)
from postpay.periods import local_date

if TYPE_CHECKING:
    from postpay.ports import InvoiceDesk, Mailer, PaymentGateway, PaymentsStore

# Longer than a charge's gateway calls with their retries (postpay.limits); shorter than the queue's
# visibility timeout (tests/unit/test_limits.py).
CHARGE_LEASE = timedelta(minutes=3)


class ChargePending(Exception):
    """Another attempt holds the charge's lease: it may be charging right now. Retry later."""


class Collection(VoidPayments):
    def __init__(
        self,
        *,
        settings: Settings,
        payments: PaymentsStore,
        gateway: PaymentGateway,
        invoices: InvoiceDesk,
        mailer: Mailer,
        clock: Clock,
        after_paid: Callable[[Invoice], object] | None = None,
    ) -> None:
        self.settings = settings
        self.payments = payments
        self.gateway = gateway
        self.invoices = invoices
        self.mailer = mailer
        self.clock = clock
        self.after_paid = after_paid  # lifts a suspension through the overdue rule

    def charge(
        self, invoice: Invoice, *, attempt: int = 1, on_session: bool = False, today: date | None = None
    ) -> str:
        """Charges the invoice's total to the card on file. Returns what happened: no_card, below_minimum,
        not_unpaid, succeeded, failed, requires_action, processing or already (an attempt was made).
        ``today``: the billing time zone's date the attempt is recorded on (default: the clock's)."""
        if invoice.status is not InvoiceStatus.UNPAID:
            return "not_unpaid"
        on_file = self.payments.card_on_file(invoice.client_id)
        if on_file is None or on_file.card is None:
            return "no_card"
        if not chargeable(invoice.total, invoice.currency):
            logger.info("below the minimum charge", extra={"invoice": invoice.number})
            return "below_minimum"
        now = self.clock.now()
        on = today or local_date(now, self.settings.billing_timezone)
        if not self.payments.claim_charge(
            invoice.number, attempt, now, CHARGE_LEASE, on=on, payment_method=on_file.card.payment_method
        ):
            record = self.payments.charge_of(invoice.number)
            if record is not None and record.attempt == attempt and record.outcome is None:
                raise ChargePending(invoice.number)
            return "already"
        # Read again after the claim: a void waits for a live claim, so one that landed since the invoice was
        # read is seen here. What an earlier try of this attempt made at the gateway is still settled.
        current = self.invoices.invoice_by_number(invoice.number)
        settled = current is None or current.status is not InvoiceStatus.UNPAID
        try:
            result = self.gateway.find_charge(
                customer=on_file.customer, invoice_number=invoice.number, attempt=attempt
            )
            if result is None and settled:
                self.payments.release_charge(invoice.number, attempt)
                return "not_unpaid"
            result = result or self.gateway.charge(
                customer=on_file.customer,
                payment_method=on_file.card.payment_method,
                amount_minor=minor_units(invoice.total, invoice.currency),
                currency=invoice.currency,
                invoice_number=invoice.number,
                attempt=attempt,
                off_session=not on_session,
            )
        except GatewayRefused:
            # nothing was created: the retry may claim the attempt at once rather than after the lease
            self.payments.release_charge(invoice.number, attempt)
            raise
        self._settle(invoice, attempt, result, email=not on_session and not settled)
        return result.status

    def _settle(self, invoice: Invoice, attempt: int, result: ChargeResult, *, email: bool) -> None:
        now = self.clock.now()
        if result.status == "succeeded":
            self.paid(invoice.number, result.intent_id or "")
        elif email and result.status in ("failed", "requires_action"):
            # The email goes before the record: a crash between them sends it twice, never not at all.
            metrics.add_metric(name="ChargesFailed", unit="Count", value=1)
            self.mailer.send(
                invoice.email,
                "payment_failed",
                invoice=invoice,
                reason=result.reason or "the card needs your confirmation",
                invoice_url=self.settings.url(f"invoices/{invoice.number}"),
            )
        self.payments.record_charge(invoice.number, attempt, result, now)
        logger.info(
            "charge settled", extra={"invoice": invoice.number, "attempt": attempt, "status": result.status}
        )

    def paid(self, number: str, intent_id: str) -> str:
        """unpaid -> paid by card ("paid"); already paid (the webhook and the charge's answer both say so)
        is fine ("settled"); a void invoice's payment is refunded in full ("refunded")."""
        try:
            invoice = self.invoices.mark_paid(number, f"card {intent_id}", self.clock.now())
        except ValueError:
            current = self.invoices.invoice_by_number(number)
            if current is not None and current.status is InvoiceStatus.VOID:
                self.refund_void_payment(current, intent_id)
                return "refunded"
            logger.info("invoice already settled", extra={"invoice": number})
            return "settled"
        metrics.add_metric(name="ChargesSucceeded", unit="Count", value=1)
        # Once: only the one call whose write moved the invoice to paid gets here (a crash right after
        # that write loses the receipt; the invoice page still shows it paid by card).
        self.mailer.send(
            invoice.email,
            "receipt",
            invoice=invoice,
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
        )
        if self.after_paid is not None:
            self.after_paid(invoice)
        return "paid"

    # refunds ------------------------------------------------------------------------------------------

    def refund(self, invoice: Invoice, amount: Decimal | None, reason: str) -> dict[str, str]:
        """The operator's refund of an invoice paid by card (postpay.billing.refunds), exactly once; on a void
        invoice, what was paid on it after the void (postpay.billing.void_payments)."""
        if invoice.status is InvoiceStatus.VOID:
            return self._refund_void_invoice(invoice, amount, reason)
        return Refunds(
            payments=self.payments, gateway=self.gateway, clock=self.clock, on_refunded=self._email_refund
        ).refund(invoice, amount, reason)

    def _email_refund(self, invoice: Invoice, refunded_minor: int) -> None:
        """The client's email of a refund the operator made: once, by the payload that recorded it."""
        total = self.refunded(invoice)
        self.mailer.send(
            invoice.email,
            "refund",
            invoice=invoice,
            amount=_decimal(refunded_minor, invoice.currency),
            refunded=total,
            in_full=total >= invoice.total,
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
        )

    def refunded(self, invoice: Invoice) -> Decimal:
        """What was refunded of the invoice's card payment, 0 when it was not paid by card: one read of
        its charge record, none for an invoice not paid by card."""
        if not (invoice.payment_reference or "").startswith("card "):
            return _decimal(0, invoice.currency)
        record = self.payments.charge_of(invoice.number)
        return _decimal(record.refunded_total if record is not None else 0, invoice.currency)

    # dunning ------------------------------------------------------------------------------------------

    def dunning(self, today: date, unpaid: Iterable[Invoice]) -> dict[str, list[str]]:
        """The daily retry of declined automatic charges on the configured days after issue (default 3 and
        7), each failure emailed; after the last one the overdue rule takes over. A retry is made at most
        once a day, and days the job did not run are caught up by one retry, not one per missed day. A
        Pay now attempt counts as one of them: the client has just tried that card."""
        summary: dict[str, list[str]] = {"retried": [], "paid": [], "failed": [], "noCard": [], "errors": []}
        days = self.settings.dunning_days
        now = int(self.clock.now().timestamp())
        for invoice in unpaid:
            record = self.payments.charge_of(invoice.number)
            if record is None:
                continue
            if record.outcome is None and record.lease_until < now:
                # A try that never finished (its job died, or Stripe stayed down through all its attempts):
                # finished now, finding that try's PaymentIntent before creating one.
                attempt = record.attempt
            elif self._retry_due(record, invoice, today, days):
                attempt = record.attempt + 1
            else:
                continue
            try:
                outcome = self.charge(invoice, attempt=attempt, today=today)
            except (GatewayError, ChargePending) as error:
                summary["errors"].append(f"{invoice.number}: {type(error).__name__}")
                continue
            if outcome == "no_card":  # removed since: nothing was charged, the retry waits for a card
                summary["noCard"].append(invoice.number)
                continue
            if outcome not in ("succeeded", "failed", "requires_action", "processing"):
                continue  # another attempt got there first, or the invoice is no longer unpaid
            summary["retried"].append(invoice.number)
            if outcome == "succeeded":
                summary["paid"].append(invoice.number)
            elif outcome in ("failed", "requires_action"):
                summary["failed"].append(invoice.number)
        return summary

    @staticmethod
    def _retry_due(record: ChargeRecord, invoice: Invoice, today: date, days: tuple[int, ...]) -> bool:
        """A declined charge with attempts left, and a dunning day come since its latest attempt: several
        missed dunning days fall due together, so they make one retry; the day of an attempt makes none."""
        if record.outcome != "failed" or record.attempt > len(days):
            return False
        slots = [invoice.issued_on + timedelta(days=day) for day in days]
        if record.attempted_on is None:  # recorded before attempts kept their day: attempt n+1 on days[n-1]
            return today >= slots[record.attempt - 1]
        return any(record.attempted_on < slot <= today for slot in slots)

    # pay now ------------------------------------------------------------------------------------------

    def pay_now(self, invoice: Invoice) -> ChargeResult:
        """The client pays with the card on file, on the site: the next charge attempt of the invoice, under
        the same claim as the automatic ones (so Pay now and a dunning retry never both charge). A bank
        asking for 3-D Secure leaves it ``requires_action`` with the client secret Stripe.js needs."""
        if invoice.status is InvoiceStatus.VOID:
            raise NotPayable("This invoice is cancelled: there is nothing to pay.")
        if invoice.status is InvoiceStatus.CARRIED:
            raise NotPayable("This amount is carried to your next invoice: there is nothing to pay now.")
        if invoice.status is not InvoiceStatus.UNPAID:
            raise NotPayable("This invoice is already paid.")
        if not chargeable(invoice.total, invoice.currency):
            raise NotPayable("This amount is below the card minimum: please pay it by bank transfer.")
        if self.card_of(invoice.client_id) is None:
            raise NotPayable("Add a card first, or pay by bank transfer.")
        record = self.payments.charge_of(invoice.number)
        if record is not None and record.outcome in ("requires_action", "processing") and record.intent_id:
            current = self.gateway.get_charge(record.intent_id)
            if current.status == "succeeded":
                self.paid(invoice.number, record.intent_id)
                raise NotPayable("This invoice is already paid.")
            if current.status in ("requires_action", "processing"):
                return current  # the same PaymentIntent: authenticate it, never a second one
            self.payments.record_charge(
                invoice.number,
                record.attempt,
                ChargeResult(intent_id=record.intent_id, status="failed", reason=current.reason),
                self.clock.now(),
            )
            record = self.payments.charge_of(invoice.number)
        if record is not None and record.outcome == "succeeded":
            raise NotPayable("This invoice is already paid.")
        if record is None:
            attempt = 1
        elif record.outcome is not None:
            attempt = record.attempt + 1
        elif record.lease_until >= int(self.clock.now().timestamp()):
            raise NotPayable("Your card is being charged for this invoice. Look again in a few minutes.")
        else:
            attempt = record.attempt  # a try that never finished: this one finishes it (found, or made)
        try:
            outcome = self.charge(invoice, attempt=attempt, on_session=True)
        except ChargePending as pending:
            raise NotPayable(
                "Your card is being charged for this invoice. Look again in a few minutes."
            ) from pending
        if outcome == "already":
            raise NotPayable("This invoice is being paid. Look again in a few minutes.")
        record = self.payments.charge_of(invoice.number)
        assert record is not None
        if outcome == "requires_action" and record.intent_id:
            return self.gateway.get_charge(record.intent_id)
        return ChargeResult(intent_id=record.intent_id, status=outcome, reason=record.reason)

    def after_authentication(self, invoice: Invoice, intent_id: str) -> str:
        """The page's return after Stripe.js ran 3-D Secure: the PaymentIntent's status, read from Stripe
        (never from the browser). Marks the invoice paid when it succeeded; the webhook does the same."""
        record = self.payments.charge_of(invoice.number)
        if record is None or record.intent_id != intent_id:
            raise NotPayable("This payment is not one of this invoice.")
        current = self.gateway.get_charge(intent_id)
        if current.invoice_number != invoice.number:
            raise NotPayable("This payment is not one of this invoice.")
        if current.status == "succeeded":
            settled = self.paid(invoice.number, intent_id)
            self.payments.record_charge(invoice.number, record.attempt, current, self.clock.now())
            if settled == "refunded":
                return "refunded"  # the invoice was voided while the bank asked: the payment went back
        elif current.status == "requires_payment_method":
            failed = ChargeResult(intent_id=intent_id, status="failed", reason=current.reason)
            self.payments.record_charge(invoice.number, record.attempt, failed, self.clock.now())
        return current.status

    def _customer(self, client_id: int, email: str) -> str:
        on_file = self.payments.card_on_file(client_id)
        if on_file is not None and on_file.customer:
            return on_file.customer
        return self.payments.save_customer(
            client_id, self.gateway.create_customer(client_id=client_id, email=email), self.clock.now()
        )

    # the card on file ---------------------------------------------------------------------------------

    def clients_with_cards(self, client_ids: list[int]) -> set[int]:
        """Which of these clients have a card on file, in one read (a worker's batch of new invoices)."""
        return self.payments.clients_with_cards(client_ids)

    def card_of(self, client_id: int) -> Card | None:
        on_file = self.payments.card_on_file(client_id)
        return on_file.card if on_file is not None else None

    def declined_on(self, card: Card, invoices: Iterable[Invoice]) -> tuple[Invoice, str | None] | None:
        """The unpaid invoice (and the gateway's reason) whose latest charge attempt was declined on this very
        card: the card is known to decline, and the client is told so rather than that invoices are charged
        to it. One read per unpaid invoice; an attempt on a card since replaced does not count."""
        for invoice in invoices:
            if invoice.status is not InvoiceStatus.UNPAID:
                continue
            record = self.payments.charge_of(invoice.number)
            if (
                record is not None
                and record.outcome == "failed"
                and record.payment_method == card.payment_method
            ):
                return invoice, record.reason
        return None

    def card_to_charge(self, invoice: Invoice) -> Card | None:
        """The card the automatic charge takes this invoice from, for the invoice email to say so instead of
        asking to pay: an unpaid invoice the gateway accepts, a card on file, and no attempt that failed or
        waits for the client (then the email offers Pay now). The worker sends the email before it charges,
        so this is the charge about to be made, or one still under way (a resend, a redelivered job)."""
        if invoice.status is not InvoiceStatus.UNPAID or not chargeable(invoice.total, invoice.currency):
            return None
        card = self.card_of(invoice.client_id)
        if card is None:
            return None
        record = self.payments.charge_of(invoice.number)
        if record is not None and record.outcome not in (None, "processing"):
            return None  # failed, needs 3-D Secure, or succeeded (the invoice is then no longer unpaid)
        return card

    def start_card_setup(self, client_id: int, email: str) -> str:
        """A SetupIntent for the client's gateway customer (created once); its client secret for the page."""
        return self.gateway.setup_intent(customer=self._customer(client_id, email))

    def finish_card_setup(self, client_id: int, setup_intent: str) -> Card:
        """Saves the card the client's SetupIntent confirmed, replacing (and detaching) the previous one.
        Raises CardNotSaved when the setup is not this client's or did not succeed."""
        on_file = self.payments.card_on_file(client_id)
        if on_file is None or not on_file.customer:
            raise CardNotSaved("no card setup was started")
        card = self.gateway.saved_card(setup_intent=setup_intent, customer=on_file.customer)
        self.payments.save_card(client_id, card, self.clock.now())
        if on_file.card is not None and on_file.card.payment_method != card.payment_method:
            self.gateway.detach(on_file.card.payment_method)
        logger.info("card saved", extra={"client_id": client_id})
        return card

    def remove_card(self, client_id: int) -> None:
        on_file = self.payments.card_on_file(client_id)
        if on_file is None or on_file.card is None:
            return
        self.payments.remove_card(client_id, self.clock.now())
        self.gateway.detach(on_file.card.payment_method)
        logger.info("card removed", extra={"client_id": client_id})

    # gateway events ------------------------------------------------------------------------------------

    def on_event(self, payload: str, signature: str | None) -> str:
        """A webhook request: verified (BadEvent otherwise), processed once per event id, unknown types
        acknowledged. Every step is idempotent, so an event whose processing died is simply redelivered;
        the id is stored after processing, and a stored id is acknowledged without processing again."""
        event = self.gateway.parse_event(payload, signature)
        if self.payments.event_seen(event.id):
            return "duplicate"
        outcome = self._apply(event)
        self.payments.mark_event(event.id, event.type, self.clock.now())
        logger.info("gateway event", extra={"event_type": event.type, "outcome": outcome})
        return outcome

    def _apply(self, event: PaymentEvent) -> str:
        if event.type not in HANDLED_EVENTS:
            return "ignored"
        if not event.invoice_number or not event.intent_id:
            return "ignored"  # not one of ours (no invoice in its metadata)
        invoice = self.invoices.invoice_by_number(event.invoice_number)
        if invoice is None:
            logger.warning("event for an unknown invoice", extra={"event_type": event.type})
            return "ignored"
        if event.type == "payment_intent.succeeded":
            return self.paid(invoice.number, event.intent_id)
        if event.type == "charge.refunded":
            self.payments.record_refund(invoice.number, event.refunded_minor or 0, self.clock.now())
            return "refund_recorded"
        record = self.payments.charge_of(invoice.number)
        if record is not None and record.intent_id == event.intent_id and record.outcome == "failed":
            return "failure_known"  # the charge's own answer recorded it and emailed the client
        if record is not None and (record.intent_id != event.intent_id or record.outcome is None):
            # Not the recorded attempt's PaymentIntent (an earlier attempt's, late: Stripe does not order its
            # events), or an attempt still charging, whose own answer records and emails it. Recording it
            # would mark the current attempt failed: a new charge while it can still succeed.
            return "failure_of_another_attempt"
        if invoice.status is InvoiceStatus.UNPAID:
            self.mailer.send(
                invoice.email,
                "payment_failed",
                invoice=invoice,
                reason=event.reason or "the card was declined",
                invoice_url=self.settings.url(f"invoices/{invoice.number}"),
            )
        if record is not None:
            self.payments.record_charge(
                invoice.number,
                record.attempt,
                ChargeResult(intent_id=event.intent_id, status="failed", reason=event.reason),
                self.clock.now(),
            )
        metrics.add_metric(name="ChargesFailed", unit="Count", value=1)
        return "failure_recorded"


HANDLED_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded")


def _decimal(minor: int, currency: str) -> Decimal:
    """Minor units as an amount with the currency's decimals: 0 USD -> 0.00."""
    return Decimal(minor).scaleb(-money.minor_unit(currency)).quantize(money.quantum(currency))
