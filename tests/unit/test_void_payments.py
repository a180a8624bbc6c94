"""Card payments and void invoices, with in-memory fakes: no charge starts on a void invoice, a void first
cancels what waits at the gateway, and a payment that still lands on one is refunded once."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from postpay.billing.collection import CHARGE_LEASE, Collection, NotPayable
from postpay.billing.void_payments import ChargeInFlight
from postpay.config import Settings
from postpay.models import Invoice, InvoiceStatus
from postpay.payments import Card, CardOnFile, ChargeResult, GatewayError, void_refund_key
from tests.unit.fakes import FakeGateway, FakeMailer, FixedClock
from tests.unit.payment_fakes import FakePaymentsStore as FakePayments
from tests.unit.test_config import BASE
from tests.unit.test_payments import STRIPE
from tests.unit.test_tax_and_invoice_document import invoice as an_invoice


class FakeDesk:
    """The part of postpay.ports.InvoiceDesk that collection uses: invoices by number, paid once, history."""

    def __init__(self, *invoices: Invoice) -> None:
        self.invoices = {i.number: i for i in invoices}
        self.history: dict[str, list[dict[str, Any]]] = {}

    def invoice_by_number(self, number: str) -> Invoice | None:
        return self.invoices.get(number)

    def mark_paid(self, number: str, reference: str, now: datetime) -> Invoice:
        found = self.invoices[number]
        if found.status is not InvoiceStatus.UNPAID:
            raise ValueError(f"invoice {number} is {found.status.value}, not unpaid")
        self.invoices[number] = dataclasses.replace(
            found, status=InvoiceStatus.PAID, paid_at=now, payment_reference=reference
        )
        return self.invoices[number]

    def add_history(self, invoice: Invoice, entry: dict[str, Any]) -> None:
        self.history.setdefault(invoice.number, []).append(entry)

    def invoice_history(self, number: str) -> list[dict[str, Any]]:
        return list(self.history.get(number, []))

    def void(self, number: str) -> None:
        self.invoices[number] = dataclasses.replace(self.invoices[number], status=InvoiceStatus.VOID)


NUMBER = "INV-000001"


def collection(desk: FakeDesk) -> tuple[Collection, FakePayments, FakeGateway, FakeMailer]:
    payments, gateway, mailer = FakePayments(), FakeGateway(), FakeMailer()
    payments.cards[7] = CardOnFile(
        customer="cus_7",
        card=Card(payment_method="pm_1", brand="visa", last4="4242", exp_month=12, exp_year=2034),
    )
    made = Collection(
        settings=Settings.from_env({**BASE, **STRIPE}),
        payments=payments,
        gateway=gateway,
        invoices=desk,  # type: ignore[arg-type]
        mailer=mailer,
        clock=FixedClock(),
    )
    return made, payments, gateway, mailer


def unpaid() -> Invoice:
    return an_invoice(number=NUMBER, total=Decimal("15.00"))


# nothing starts on a void invoice ------------------------------------------------------------------------


def test_pay_now_on_a_void_invoice_says_it_is_cancelled_and_calls_no_gateway():
    desk = FakeDesk(unpaid())
    desk.void(NUMBER)
    pay, _payments, gateway, _ = collection(desk)
    with pytest.raises(NotPayable, match="cancelled"):
        pay.pay_now(desk.invoices[NUMBER])
    assert gateway.calls == []


def test_a_charge_of_an_invoice_voided_since_it_was_read_is_not_made_and_its_claim_is_released():
    # Given the daily job read the invoice unpaid, and the operator voided it before the charge claimed it
    desk = FakeDesk(unpaid())
    read_earlier = desk.invoices[NUMBER]
    desk.void(NUMBER)
    pay, payments, gateway, _ = collection(desk)
    # When the charge runs with what it read
    outcome = pay.charge(read_earlier)
    # Then nothing is sent to the gateway, and the claim does not hold a later void
    assert outcome == "not_unpaid" and gateway.calls == []
    assert payments.charges[NUMBER].lease_until == 0


def test_dunning_skips_an_invoice_voided_while_the_day_ran():
    desk = FakeDesk(unpaid())
    pay, _payments, gateway, _ = collection(desk)
    gateway.charge_status = "failed"
    pay.charge(desk.invoices[NUMBER])
    read_earlier = desk.invoices[NUMBER]
    desk.void(NUMBER)
    summary = pay.dunning(read_earlier.issued_on + timedelta(days=3), [read_earlier])
    assert summary["paid"] == [] and summary["failed"] == []
    assert [c for c in gateway.calls if c.startswith("charge")] == [f"charge pi_{NUMBER}_1"]


# before a void -------------------------------------------------------------------------------------------


def test_a_void_waits_for_a_charge_being_made():
    desk = FakeDesk(unpaid())
    pay, payments, _gateway, _ = collection(desk)
    assert payments.claim_charge(NUMBER, 1, FixedClock().now(), CHARGE_LEASE)
    with pytest.raises(ChargeInFlight, match="right now"):
        pay.before_void(desk.invoices[NUMBER])


def test_a_void_cancels_the_payment_waiting_for_3d_secure():
    desk = FakeDesk(unpaid())
    pay, payments, gateway, _ = collection(desk)
    gateway.charge_status = "requires_action"
    pay.charge(desk.invoices[NUMBER], on_session=True)
    pay.before_void(desk.invoices[NUMBER])
    assert gateway.intents[f"pi_{NUMBER}_1"].status == "canceled"
    record = payments.charges[NUMBER]
    assert (record.outcome, record.reason) == ("failed", "cancelled: the invoice was voided")


def test_a_void_finds_and_cancels_what_a_try_that_never_finished_left_waiting():
    desk = FakeDesk(unpaid())
    pay, payments, gateway, _ = collection(desk)
    long_ago = FixedClock().now() - CHARGE_LEASE - timedelta(minutes=1)
    assert payments.claim_charge(NUMBER, 1, long_ago, CHARGE_LEASE)
    gateway.charge_status = "requires_action"  # made at the gateway, its answer lost in a crash
    gateway.charge(
        customer="cus_7",
        payment_method="pm_1",
        amount_minor=1500,
        currency="USD",
        invoice_number=NUMBER,
        attempt=1,
    )
    pay.before_void(desk.invoices[NUMBER])
    assert gateway.intents[f"pi_{NUMBER}_1"].status == "canceled"


def test_a_payment_that_won_the_race_pays_the_invoice_so_the_void_is_refused_as_paid():
    desk = FakeDesk(unpaid())
    pay, _payments, gateway, mailer = collection(desk)
    gateway.charge_status = "requires_action"
    pay.charge(desk.invoices[NUMBER], on_session=True)
    intent = f"pi_{NUMBER}_1"
    gateway.intents[intent] = dataclasses.replace(gateway.intents[intent], status="succeeded")
    pay.before_void(desk.invoices[NUMBER])
    assert desk.invoices[NUMBER].status is InvoiceStatus.PAID
    assert mailer.to("ada@example.com")[-1] == "receipt"


def test_a_payment_still_processing_holds_the_void():
    desk = FakeDesk(unpaid())
    pay, _payments, gateway, _ = collection(desk)
    gateway.charge_status = "processing"
    pay.charge(desk.invoices[NUMBER])
    with pytest.raises(ChargeInFlight, match="processing"):
        pay.before_void(desk.invoices[NUMBER])


# a payment that lands on a void invoice -------------------------------------------------------------------


def landed_on_void() -> tuple[FakeDesk, Collection, FakePayments, FakeGateway, FakeMailer, str]:
    desk = FakeDesk(unpaid())
    pay, payments, gateway, mailer = collection(desk)
    intent = f"pi_{NUMBER}_2"
    gateway.intents[intent] = ChargeResult(
        intent_id=intent, status="succeeded", invoice_number=NUMBER, amount_minor=1500
    )
    desk.void(NUMBER)
    return desk, pay, payments, gateway, mailer, intent


def test_a_payment_on_a_void_invoice_is_refunded_in_full_once_however_often_it_is_reported():
    desk, pay, payments, gateway, mailer, intent = landed_on_void()
    # When it is reported three times (the webhook, its replay, the client's return from the bank)
    outcomes = [pay.paid(NUMBER, intent) for _ in range(3)]
    # Then the invoice stays void, one refund of the whole payment is asked, the client emailed once
    assert outcomes == ["refunded"] * 3
    assert desk.invoices[NUMBER].status is InvoiceStatus.VOID
    assert gateway.calls.count(f"refund {intent}") == 1
    assert gateway.refunds == {void_refund_key(NUMBER, intent): 1500}
    assert payments.void_payments[intent].refunded_minor == 1500
    assert mailer.to("ada@example.com") == ["payment_refunded"]
    assert mailer.sent[0].context["amount"] == "15.00 USD"
    assert [h["event"] for h in desk.history[NUMBER]] == [
        "card payment on the void invoice",
        "card payment refunded: the invoice is void",
    ]


def test_a_refund_that_died_before_its_record_is_asked_again_under_the_same_key(monkeypatch):
    _desk, pay, payments, gateway, mailer, intent = landed_on_void()

    def crash(*_: object) -> bool:
        raise RuntimeError("the function died after the refund, before recording it")

    with monkeypatch.context() as patched:
        patched.setattr(payments, "mark_void_payment_refunded", crash)
        with pytest.raises(RuntimeError):
            pay.paid(NUMBER, intent)
    assert pay.paid(NUMBER, intent) == "refunded"
    assert gateway.calls.count(f"refund {intent}") == 2 and len(gateway.refunds) == 1, "one refund at Stripe"
    assert mailer.to("ada@example.com") == ["payment_refunded"]


def test_the_operators_refund_finishes_a_void_payments_refund_that_failed(monkeypatch):
    # Given a payment on a void invoice whose automatic refund Stripe refused
    desk, pay, payments, gateway, mailer, intent = landed_on_void()

    def down(**_: object) -> int:
        raise GatewayError("Stripe is unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(gateway, "refund", down)
        with pytest.raises(GatewayError):
            pay.paid(NUMBER, intent)
    assert payments.void_payments[intent].refunded_minor is None and mailer.sent == []
    # When the operator refunds the void invoice (twice)
    answers = [pay.refund(desk.invoices[NUMBER], None, "the automatic refund failed") for _ in range(2)]
    # Then that payment is refunded once, in full, and the client emailed once
    assert [a["refunded"] for a in answers] == ["15.00", "15.00"]
    assert len(gateway.refunds) == 1 and payments.void_payments[intent].refunded_minor == 1500
    assert mailer.to("ada@example.com") == ["payment_refunded"]


def test_the_operators_refund_on_a_void_invoice_refuses_a_partial_amount_or_nothing_to_refund():
    desk, pay, *_ = landed_on_void()
    with pytest.raises(NotPayable, match="refunded in full, leave amount out"):
        pay.refund(desk.invoices[NUMBER], Decimal("1.00"), "part")
    with pytest.raises(NotPayable, match="no card payment on it is recorded"):
        pay.refund(desk.invoices[NUMBER], None, "nothing was paid")


def test_the_void_refund_key_is_one_per_invoice_and_payment():
    assert void_refund_key("INV-1", "pi_a") == void_refund_key("INV-1", "pi_a")
    assert void_refund_key("INV-1", "pi_a") != void_refund_key("INV-1", "pi_b")
    assert void_refund_key("INV-1", "pi_a") != void_refund_key("INV-2", "pi_a")
    with pytest.raises(ValueError):
        void_refund_key("INV-1", "")
