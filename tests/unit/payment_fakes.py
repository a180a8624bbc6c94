"""In-memory fakes of the payments ports (postpay.ports.PaymentsStore and PaymentGateway).

FakePaymentsStore keeps the conditions of the DynamoDB store (postpay.adapters.payments_store): a charge
attempt is claimed once, the next attempt only after a failed one, the same one again only once its lease
has expired without an outcome; an outcome is recorded only for the attempt that holds the item.

FakeGateway behaves as Stripe does where collection relies on it: a creating request under an idempotency
key it has seen returns the first answer again (and refuses other parameters under the same key), a
PaymentIntent carries its invoice and attempt in its metadata, a refund never exceeds what is left. What
the next charge comes to is scripted per call (``script``): a success, a decline, 3-D Secure, a refusal
before anything is created, or a timeout after the PaymentIntent was made (the answer lost).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from postpay.payments import (
    BadEvent,
    Card,
    CardNotSaved,
    CardOnFile,
    ChargeRecord,
    ChargeResult,
    GatewayError,
    GatewayRefused,
    PaymentEvent,
    PendingRefund,
    VoidPayment,
    idempotency_key,
)


class ConditionFailed(Exception):
    """A conditional write the DynamoDB store would refuse (its UpdateError)."""


class FakePaymentsStore:
    """postpay.ports.PaymentsStore in memory, with the payments table's conditions."""

    def __init__(self) -> None:
        self.cards: dict[int, CardOnFile] = {}
        self.charges: dict[str, ChargeRecord] = {}
        self.events: dict[str, str] = {}
        self.void_payments: dict[str, VoidPayment] = {}
        self.fail_next_record = 0  # record_charge raises, as a store unreachable after the charge would
        self.fail_next_finish_refund = 0  # finish_refund raises: a crash after the gateway refunded

    # cards
    def card_on_file(self, client_id: int) -> CardOnFile | None:
        return self.cards.get(client_id)

    def clients_with_cards(self, client_ids: list[int]) -> set[int]:
        return {
            c for c in client_ids if (on_file := self.cards.get(c)) is not None and on_file.card is not None
        }

    def save_customer(self, client_id: int, customer: str, now: datetime) -> str:
        on_file = self.cards.get(client_id)
        if on_file is None or not on_file.customer:  # a concurrent first wins
            self.cards[client_id] = CardOnFile(customer=customer, card=on_file.card if on_file else None)
        return self.cards[client_id].customer

    def save_card(self, client_id: int, card: Card, now: datetime) -> None:
        on_file = self.cards.get(client_id)
        if on_file is None or not on_file.customer:
            raise ConditionFailed(f"no customer for client {client_id}")
        self.cards[client_id] = CardOnFile(customer=on_file.customer, card=card)

    def remove_card(self, client_id: int, now: datetime) -> None:
        on_file = self.cards.get(client_id)
        if on_file is None or not on_file.customer:
            raise ConditionFailed(f"no customer for client {client_id}")
        self.cards[client_id] = CardOnFile(customer=on_file.customer, card=None)

    # charges
    def charge_of(self, number: str) -> ChargeRecord | None:
        return self.charges.get(number)

    def claim_charge(
        self,
        number: str,
        attempt: int,
        now: datetime,
        lease: timedelta,
        *,
        on: date | None = None,
        payment_method: str | None = None,
    ) -> bool:
        record = self.charges.get(number)
        expired = int(now.timestamp())
        free = (
            record is None
            or (record.outcome == "failed" and record.attempt < attempt)
            or (record.attempt == attempt and record.outcome is None and record.lease_until < expired)
        )
        if not free:
            return False
        lease_until = int((now + lease).timestamp())
        if record is None:
            self.charges[number] = ChargeRecord(
                attempt=attempt,
                intent_id=None,
                outcome=None,
                reason=None,
                lease_until=lease_until,
                attempted_on=on,
                payment_method=payment_method,
            )
        else:  # the store keeps the intent id and the refunds; it clears the outcome and its reason
            self.charges[number] = dataclasses.replace(
                record,
                attempt=attempt,
                outcome=None,
                reason=None,
                lease_until=lease_until,
                attempted_on=on or record.attempted_on,
                payment_method=payment_method or record.payment_method,
            )
        return True

    def release_charge(self, number: str, attempt: int) -> None:
        record = self.charges.get(number)
        if record is None or record.attempt != attempt or record.outcome is not None:
            raise ConditionFailed(f"charge {number} attempt {attempt} is not held")
        self.charges[number] = dataclasses.replace(record, lease_until=0)

    def record_charge(self, number: str, attempt: int, result: ChargeResult, now: datetime) -> None:
        if self.fail_next_record:
            self.fail_next_record -= 1
            raise RuntimeError("DynamoDB unavailable")
        record = self.charges.get(number)
        if record is None or record.attempt != attempt:
            raise ConditionFailed(f"charge {number} is not at attempt {attempt}")
        self.charges[number] = dataclasses.replace(
            record,
            outcome=result.status,
            intent_id=result.intent_id or record.intent_id,
            reason=result.reason or None,
            lease_until=0,
        )

    def _charge_or_empty(self, number: str) -> ChargeRecord:
        return self.charges.get(number) or ChargeRecord(attempt=0, intent_id=None, outcome=None, reason=None)

    def claim_refund(
        self, number: str, refund: PendingRefund, *, refunded_at_most: int, now: datetime, lease: timedelta
    ) -> bool:
        record = self._charge_or_empty(number)
        free = (
            record.refund_seq == refund.seq - 1
            and record.pending_refund is None
            and record.refunds_done_minor <= refunded_at_most
            and record.refunded_minor <= refunded_at_most
        )
        if free:
            pending = dataclasses.replace(refund, claimed_at=now, lease_until=int((now + lease).timestamp()))
            self.charges[number] = dataclasses.replace(record, refund_seq=refund.seq, pending_refund=pending)
        return free

    def take_refund(self, number: str, seq: int, now: datetime, lease: timedelta) -> bool:
        record = self._charge_or_empty(number)
        pending = record.pending_refund
        if record.refund_seq != seq or pending is None or pending.lease_until >= int(now.timestamp()):
            return False
        taken = dataclasses.replace(pending, lease_until=int((now + lease).timestamp()))
        self.charges[number] = dataclasses.replace(record, pending_refund=taken)
        return True

    def finish_refund(self, number: str, seq: int, refunded_minor: int, now: datetime) -> bool:
        if self.fail_next_finish_refund:
            self.fail_next_finish_refund -= 1
            raise RuntimeError("DynamoDB unavailable")
        record = self._charge_or_empty(number)
        if record.refund_seq != seq or record.pending_refund is None:
            return False
        self.charges[number] = dataclasses.replace(
            record, pending_refund=None, refunds_done_minor=record.refunds_done_minor + refunded_minor
        )
        return True

    def release_refund(self, number: str, seq: int) -> None:
        record = self._charge_or_empty(number)
        if record.refund_seq == seq and record.pending_refund is not None:
            self.charges[number] = dataclasses.replace(record, pending_refund=None)

    def record_refund(self, number: str, refunded_minor: int, now: datetime) -> None:
        record = self._charge_or_empty(number)
        if refunded_minor > record.refunded_minor:  # the gateway's total only grows; events are unordered
            self.charges[number] = dataclasses.replace(record, refunded_minor=refunded_minor)

    # gateway events
    # payments on void invoices (one record per PaymentIntent, its refund recorded once)
    def record_void_payment(self, number: str, intent_id: str, amount_minor: int, now: datetime) -> bool:
        if intent_id in self.void_payments:
            return False
        self.void_payments[intent_id] = VoidPayment(
            invoice_number=number, intent_id=intent_id, amount_minor=amount_minor
        )
        return True

    def void_payment(self, intent_id: str) -> VoidPayment | None:
        return self.void_payments.get(intent_id)

    def mark_void_payment_refunded(self, intent_id: str, refunded_minor: int, now: datetime) -> bool:
        found = self.void_payments.get(intent_id)
        if found is None or found.refunded_minor is not None:
            return False
        self.void_payments[intent_id] = dataclasses.replace(found, refunded_minor=refunded_minor)
        return True

    def event_seen(self, event_id: str) -> bool:
        return event_id in self.events

    def mark_event(self, event_id: str, event_type: str, now: datetime) -> None:
        self.events[event_id] = event_type


# ---------------------------------------------------------------------------------------------- gateway


@dataclass
class Intent:
    """A PaymentIntent as the fake gateway keeps it, in Stripe's own statuses."""

    id: str
    customer: str
    payment_method: str
    amount_minor: int
    currency: str
    invoice_number: str
    attempt: int
    off_session: bool
    status: str  # succeeded | requires_payment_method | requires_action | processing
    reason: str | None = None
    refunded_minor: int = 0


@dataclass
class _Setup:
    customer: str
    status: str = "requires_payment_method"
    payment_method: str | None = None


# What the next charge comes to, by the word a test scripts it with:
#   succeed            the PaymentIntent succeeds
#   decline            Stripe creates it, declines the card (requires_payment_method) and answers a CardError
#   authenticate       the bank asks for 3-D Secure (requires_action)
#   processing         the payment is pending (processing)
#   refuse             Stripe answers an error before creating anything (GatewayRefused)
#   timeout            the PaymentIntent is created (and succeeds) but the answer is lost (GatewayError)
#   down               Stripe cannot be reached; nothing is created (GatewayError)
OUTCOMES = ("succeed", "decline", "authenticate", "processing", "refuse", "timeout", "down")


@dataclass
class FakeGateway:
    """postpay.ports.PaymentGateway in memory, with Stripe's idempotency keys."""

    secret: str = "whsec_test"
    script: list[str] = field(default_factory=list)  # outcomes of the next charges, in order
    default: str = "succeed"
    decline_reason: str = "Your card was declined."
    list_lags: bool = False  # find_charge does not see PaymentIntents yet (Stripe's list lags its writes)
    intents: dict[str, Intent] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # id -> email
    setups: dict[str, _Setup] = field(default_factory=dict)
    methods: dict[str, Card] = field(default_factory=dict)
    attached: dict[str, str] = field(default_factory=dict)  # payment method -> customer
    refunds: list[tuple[str, int, str]] = field(default_factory=list)  # (intent, amount, reason)
    refund_keys: dict[str, tuple[str, int]] = field(default_factory=dict)  # metadata key -> (intent, amount)
    lose_next_refund: bool = False  # the refund is made but its answer is lost (GatewayError)
    calls: list[str] = field(default_factory=list)
    on_charge: Callable[[], None] | None = None  # runs inside the charge request (a concurrent job)
    on_refund: Callable[[], None] | None = None  # runs inside the refund request (a concurrent payload)
    # idempotency key -> (the first request's parameters, its answer), as Stripe keeps them
    answers: dict[str, tuple[tuple[Any, ...], Any]] = field(default_factory=dict)

    # Stripe's idempotency: the same key returns the first answer (or raises the first error) again
    def _idempotent(self, key: str, params: tuple[Any, ...], create: Callable[[], Any]) -> Any:
        if key in self.answers:
            first_params, answer = self.answers[key]
            if first_params != params:
                raise GatewayError("idempotency key reused with other parameters")
            if isinstance(answer, Exception):
                raise answer
            return answer
        answer = create()  # a request refused before it ran (raising here) leaves no answer under its key
        self.answers[key] = (params, answer)
        return answer

    def create_customer(self, *, client_id: int, email: str) -> str:
        self.calls.append("create_customer")

        def create() -> str:
            customer = f"cus_{len(self.customers) + 1}"
            self.customers[customer] = email
            return customer

        result: str = self._idempotent(f"postpay-customer-{client_id}", (client_id, email), create)
        return result

    def setup_intent(self, *, customer: str) -> str:
        self.calls.append("setup_intent")
        if customer not in self.customers:
            raise GatewayRefused("no such customer")
        setup = f"seti_{len(self.setups) + 1}"
        self.setups[setup] = _Setup(customer)
        return f"{setup}_secret_x"

    def confirm_setup(self, client_secret: str, card: Card) -> str:
        """What the client's browser does with Stripe.js: confirms the SetupIntent with a card."""
        setup = client_secret.removesuffix("_secret_x")
        self.methods[card.payment_method] = card
        self.setups[setup].status, self.setups[setup].payment_method = "succeeded", card.payment_method
        self.attached[card.payment_method] = self.setups[setup].customer
        return setup

    def card(self, payment_method: str) -> Card:
        self.calls.append("card")
        return self.methods[payment_method]

    def saved_card(self, *, setup_intent: str, customer: str) -> Card:
        self.calls.append("saved_card")
        setup = self.setups.get(setup_intent)
        if setup is None:
            raise CardNotSaved("no such card setup")
        if setup.customer != customer or setup.status != "succeeded" or setup.payment_method is None:
            raise CardNotSaved(f"the card setup is {setup.status}")
        return self.methods[setup.payment_method]

    def detach(self, payment_method: str) -> None:
        self.calls.append("detach")
        self.attached.pop(payment_method, None)

    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        invoice_number: str,
        attempt: int,
        off_session: bool = True,
    ) -> ChargeResult:
        self.calls.append("charge")
        if self.on_charge is not None:
            hook, self.on_charge = self.on_charge, None
            hook()
        params = (customer, payment_method, amount_minor, currency, invoice_number, attempt, off_session)

        def create() -> Intent:
            outcome = self.script.pop(0) if self.script else self.default
            if outcome in ("refuse", "down"):
                error = GatewayRefused if outcome == "refuse" else GatewayError
                raise error(f"scripted {outcome}")
            status = {
                "succeed": "succeeded",
                "timeout": "succeeded",
                "decline": "requires_payment_method",
                "authenticate": "requires_action",
                "processing": "processing",
            }[outcome]
            intent = Intent(
                id=f"pi_{len(self.intents) + 1}",
                customer=customer,
                payment_method=payment_method,
                amount_minor=amount_minor,
                currency=currency,
                invoice_number=invoice_number,
                attempt=attempt,
                off_session=off_session,
                status=status,
                reason=self.decline_reason if outcome == "decline" else None,
            )
            self.intents[intent.id] = intent
            if outcome == "timeout":
                raise _Lost(intent)
            return intent

        key = idempotency_key(invoice_number, attempt)
        try:
            intent = self._idempotent(key, params, create)
        except _Lost as lost:
            self.answers[key] = (params, lost.intent)  # Stripe kept the answer; only ours was lost
            raise GatewayError("Request timed out") from None
        return _result(intent)

    def find_charge(self, *, customer: str, invoice_number: str, attempt: int) -> ChargeResult | None:
        self.calls.append("find_charge")
        if self.list_lags:
            return None
        for intent in self.intents.values():
            if (intent.customer, intent.invoice_number, intent.attempt) == (
                customer,
                invoice_number,
                attempt,
            ):
                return _result(intent)
        return None

    def get_charge(self, intent_id: str) -> ChargeResult:
        self.calls.append("get_charge")
        intent = self.intents.get(intent_id)
        if intent is None:
            raise GatewayRefused("no such payment")
        return ChargeResult(
            intent_id=intent.id,
            status=intent.status,
            reason=intent.reason,
            client_secret=f"{intent.id}_secret_x",
            invoice_number=intent.invoice_number,
            amount_minor=intent.amount_minor,
        )

    def cancel_charge(self, intent_id: str) -> ChargeResult:
        """Stripe cancels a PaymentIntent still waiting; one it will not cancel is returned as it stands."""
        self.calls.append("cancel_charge")
        intent = self.intents.get(intent_id)
        if intent is None:
            raise GatewayRefused("no such payment")
        if intent.status in ("requires_action", "requires_payment_method", "requires_confirmation"):
            intent.status = "canceled"
        return self.get_charge(intent_id)

    def authenticate(self, intent_id: str, *, passes: bool = True) -> None:
        """What the client's bank step does to a requires_action PaymentIntent."""
        intent = self.intents[intent_id]
        assert intent.status == "requires_action"
        intent.status = "succeeded" if passes else "requires_payment_method"
        intent.reason = None if passes else "The bank refused the authentication."

    def refund(self, *, intent_id: str, amount_minor: int, reason: str, key: str) -> int:
        self.calls.append("refund")
        if self.on_refund is not None:
            hook, self.on_refund = self.on_refund, None
            hook()

        def create() -> int:
            intent = self.intents.get(intent_id)
            if intent is None or intent.status != "succeeded":
                raise GatewayRefused("no such charge to refund")
            if amount_minor <= 0 or amount_minor > intent.amount_minor - intent.refunded_minor:
                raise GatewayRefused("the refund is greater than what is left of the charge")
            intent.refunded_minor += amount_minor
            self.refunds.append((intent_id, amount_minor, reason))
            self.refund_keys[key] = (intent_id, amount_minor)  # the refund's metadata keeps its key
            return amount_minor

        result: int = self._idempotent(key, (intent_id, amount_minor, reason), create)
        if self.lose_next_refund:
            self.lose_next_refund = False
            raise GatewayError("Request timed out")
        return result

    def find_refund(self, *, intent_id: str, key: str) -> int | None:
        self.calls.append("find_refund")
        found = self.refund_keys.get(key)
        return found[1] if found is not None and found[0] == intent_id else None

    def forget_idempotency_keys(self) -> None:
        """Stripe prunes idempotency keys after 24 hours: a request under an old key is a new request."""
        self.answers.clear()

    # webhooks: a fake signature scheme with Stripe's outcome (a forged or unsigned body is a BadEvent)
    def sign(self, payload: str) -> str:
        return hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def event(self, event: PaymentEvent) -> tuple[str, str]:
        """A webhook request for the event: its body and its valid signature."""
        payload = json.dumps(dataclasses.asdict(event))
        return payload, self.sign(payload)

    def parse_event(self, payload: str, signature: str | None) -> PaymentEvent:
        self.calls.append("parse_event")
        if not signature:
            raise BadEvent("no Stripe-Signature header")
        if not hmac.compare_digest(signature, self.sign(payload)):
            raise BadEvent("the signature does not match, or the event is too old")
        try:
            return PaymentEvent(**json.loads(payload))
        except (ValueError, TypeError) as error:
            raise BadEvent("the body is not a Stripe event") from error

    # what the tests look at
    def charges_of(self, invoice_number: str) -> list[Intent]:
        """Every PaymentIntent created for the invoice: what the client's card statement would show."""
        return [i for i in self.intents.values() if i.invoice_number == invoice_number]


class _Lost(Exception):
    def __init__(self, intent: Intent) -> None:
        super().__init__(intent.id)
        self.intent = intent


def _result(intent: Intent) -> ChargeResult:
    """A PaymentIntent as the Stripe adapter answers a charge with it (postpay.adapters.stripe_gateway)."""
    if intent.status == "requires_payment_method":
        return ChargeResult(intent_id=intent.id, status="failed", reason=intent.reason)
    if intent.status == "requires_action":
        return ChargeResult(
            intent_id=intent.id, status="requires_action", client_secret=f"{intent.id}_secret_x"
        )
    if intent.status == "succeeded":
        return ChargeResult(intent_id=intent.id, status="succeeded")
    return ChargeResult(intent_id=intent.id, status="processing")


if TYPE_CHECKING:  # mypy (make typecheck) holds every fake to its port
    from postpay import ports

    _payments: ports.PaymentsStore = FakePaymentsStore()
    _gateway: ports.PaymentGateway = FakeGateway()
