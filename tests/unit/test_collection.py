"""Collection against in-memory ports: one charge per invoice whatever is called twice or dies half-way,
the minimum never sent, declines emailed once, dunning on its days, webhooks once, refunds never more
than was paid. The same flows run against localstripe over HTTP in tests/integration/test_payments.py."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from postpay.billing.collection import CHARGE_LEASE, ChargePending, Collection, NotPayable
from postpay.billing.refunds import REFUND_LEASE
from postpay.config import Settings
from postpay.models import Invoice, InvoiceLine, InvoiceStatus
from postpay.payments import (
    BadEvent,
    Card,
    CardNotSaved,
    CardOnFile,
    GatewayError,
    GatewayRefused,
    PaymentEvent,
    idempotency_key,
)
from tests.unit.fakes import FakeBilling, FakeMailer, FixedClock
from tests.unit.payment_fakes import FakeGateway, FakePaymentsStore
from tests.unit.test_config import BASE

ISSUED = date(2026, 2, 1)
VISA = Card(payment_method="pm_visa", brand="visa", last4="4242", exp_month=12, exp_year=2030)


class World:
    """A client (7, ada@example.com) with a card on file and Collection wired to fakes."""

    def __init__(self, **env: str) -> None:
        self.settings = Settings.from_env({**BASE, **env})
        self.clock = FixedClock(datetime(2026, 2, 1, 0, 5, tzinfo=UTC))
        self.payments, self.gateway = FakePaymentsStore(), FakeGateway()
        self.billing, self.mailer = FakeBilling(), FakeMailer()
        self.lifted: list[str] = []
        self.collection = Collection(
            settings=self.settings,
            payments=self.payments,
            gateway=self.gateway,
            invoices=self.billing,
            mailer=self.mailer,
            clock=self.clock,
            after_paid=lambda invoice: self.lifted.append(invoice.number),
        )
        self.payments.cards[7] = CardOnFile(customer="cus_ada", card=VISA)
        self.gateway.customers["cus_ada"] = "ada@example.com"
        self.gateway.methods[VISA.payment_method] = VISA

    def issue(
        self, total: str = "12.34", currency: str = "USD", client_id: int = 7, month: int = 1
    ) -> Invoice:
        def invoice_for(n: int) -> Invoice:
            return Invoice(
                number=f"INV-{n:06d}",
                client_id=client_id,
                email="ada@example.com" if client_id == 7 else f"client{client_id}@example.com",
                solus_user_id=12,
                period_start=date(2026, month, 1),
                period_end=date(2026, month, 28),
                timezone="UTC",
                currency=currency,
                token_price=Decimal("0.001"),
                lines=(
                    InvoiceLine(
                        server_id=1,
                        name="web",
                        plan="Small",
                        hours=700,
                        tokens=5000,
                        unit_price=Decimal("0.001"),
                        amount=Decimal(total),
                    ),
                ),
                total=Decimal(total),
                status=InvoiceStatus.UNPAID,
                issued_on=ISSUED,
                due_on=ISSUED + timedelta(days=14),
                usage="{}",
                run_id=f"run-{month}",
            )

        run_id = f"run-{month}"  # one outcome per (run, client): a month's run
        self.billing.start_run(run_id, trigger="schedule", period={}, now=self.clock.now())
        return self.billing.issue(invoice_for, run_id=run_id, now=self.clock.now(), email_lease=timedelta())

    def current(self, invoice: Invoice) -> Invoice:
        found = self.billing.invoice_by_number(invoice.number)
        assert found is not None
        return found

    def mails(self, template: str) -> list[dict[str, Any]]:
        return [m.context for m in self.mailer.sent if m.template == template]

    def on_day(self, day: int) -> date:
        """Moves the clock to ``day`` days after issue and returns that date (the daily run's today)."""
        self.clock.moment = datetime(2026, 2, 1, 6, 0, tzinfo=UTC) + timedelta(days=day)
        return self.clock.moment.date()

    def webhook(self, event_id: str, kind: str, **fields: Any) -> str:
        payload, signature = self.gateway.event(PaymentEvent(id=event_id, type=kind, **fields))
        return self.collection.on_event(payload, signature)


@pytest.fixture
def world() -> World:
    return World()


# the automatic charge: exactly once ---------------------------------------------------------------


def test_an_invoice_is_charged_once_off_session_and_marked_paid_with_one_receipt(world):
    invoice = world.issue("12.34")
    assert world.collection.charge(invoice) == "succeeded"
    [intent] = world.gateway.charges_of(invoice.number)
    assert (intent.amount_minor, intent.currency, intent.attempt) == (1234, "USD", 1) and intent.off_session
    paid = world.current(invoice)
    assert paid.status is InvoiceStatus.PAID and paid.payment_reference == f"card {intent.id}"
    assert len(world.mails("receipt")) == 1 and world.lifted == [invoice.number]
    assert world.payments.charge_of(invoice.number).outcome == "succeeded"


def test_a_duplicate_call_after_the_charge_charges_nothing_more(world):
    invoice = world.issue()
    world.collection.charge(invoice)
    assert world.collection.charge(invoice) == "already"  # the redelivered job, holding the unpaid invoice
    assert len(world.gateway.charges_of(invoice.number)) == 1
    assert len(world.mails("receipt")) == 1 and world.lifted == [invoice.number]


def test_a_duplicate_job_while_the_first_is_charging_waits_and_charges_nothing(world):
    # Given a second job for the same invoice arriving while the first is inside its gateway call
    invoice = world.issue()
    concurrent: list[Exception] = []

    def second_job() -> None:
        try:
            world.collection.charge(invoice)
        except ChargePending as pending:
            concurrent.append(pending)

    world.gateway.on_charge = second_job
    # When the first finishes
    assert world.collection.charge(invoice) == "succeeded"
    # Then the second was told to retry later and the card was charged once
    assert len(concurrent) == 1 and world.gateway.calls.count("charge") == 1
    assert len(world.gateway.charges_of(invoice.number)) == 1


def test_a_crash_after_the_gateway_charged_is_found_on_retry_not_charged_again(world):
    # Given a charge Stripe made whose answer was lost (a timeout after the PaymentIntent was created)
    invoice = world.issue()
    world.gateway.script = ["timeout"]
    with pytest.raises(GatewayError):
        world.collection.charge(invoice)
    assert world.current(invoice).status is InvoiceStatus.UNPAID
    # When the job is redelivered: first while the lease may still be the first attempt's, then after it
    with pytest.raises(ChargePending):
        world.collection.charge(invoice)
    world.clock.advance(seconds=CHARGE_LEASE.total_seconds() + 1)
    assert world.collection.charge(invoice) == "succeeded"
    # Then the PaymentIntent made the first time is the one recorded: one charge, one receipt
    [intent] = world.gateway.charges_of(invoice.number)
    assert world.gateway.calls.count("charge") == 1
    assert world.current(invoice).payment_reference == f"card {intent.id}"
    assert len(world.mails("receipt")) == 1


def test_a_retry_that_cannot_find_the_lost_charge_gets_it_back_by_its_idempotency_key(world):
    # Given a lost answer, and Stripe's list not showing that PaymentIntent yet
    invoice = world.issue()
    world.gateway.script, world.gateway.list_lags = ["timeout"], True
    with pytest.raises(GatewayError):
        world.collection.charge(invoice)
    world.clock.advance(seconds=CHARGE_LEASE.total_seconds() + 1)
    # When the retry creates the charge again (the script would now decline a new one)
    world.gateway.script = ["decline"]
    assert world.collection.charge(invoice) == "succeeded"
    # Then it was the same request under the same key: Stripe answered with the first PaymentIntent
    [intent] = world.gateway.charges_of(invoice.number)
    assert world.gateway.calls.count("charge") == 2
    assert idempotency_key(invoice.number, 1) in world.gateway.answers
    assert world.current(invoice).payment_reference == f"card {intent.id}"


def test_a_crash_after_the_charge_before_its_outcome_was_recorded_sends_no_second_receipt(world):
    # Given a charge that succeeded and marked the invoice paid, then the store failed to record it
    invoice = world.issue()
    world.payments.fail_next_record = 1
    with pytest.raises(RuntimeError):
        world.collection.charge(invoice)
    assert world.current(invoice).status is InvoiceStatus.PAID and len(world.mails("receipt")) == 1
    # When the job comes back with the invoice it was given, once the lease has expired
    world.clock.advance(seconds=CHARGE_LEASE.total_seconds() + 1)
    assert world.collection.charge(invoice) == "succeeded"
    # Then the charge is found, recorded, and neither made nor receipted twice
    assert len(world.gateway.charges_of(invoice.number)) == 1
    assert len(world.mails("receipt")) == 1
    assert world.payments.charge_of(invoice.number).outcome == "succeeded"


def test_a_request_stripe_refused_frees_the_attempt_at_once(world):
    invoice = world.issue()
    world.gateway.script = ["refuse"]
    with pytest.raises(GatewayRefused):
        world.collection.charge(invoice)
    assert world.gateway.charges_of(invoice.number) == []
    assert world.collection.charge(invoice) == "succeeded"  # no wait for the lease: nothing was created
    assert len(world.gateway.charges_of(invoice.number)) == 1


@pytest.mark.parametrize(("total", "currency"), [("0.49", "USD"), ("0.29", "GBP"), ("49", "JPY")])
def test_an_amount_below_the_minimum_charge_never_reaches_the_gateway(world, total, currency):
    invoice = world.issue(total, currency)
    assert world.collection.charge(invoice) == "below_minimum"
    with pytest.raises(NotPayable, match="below the card minimum"):
        world.collection.pay_now(invoice)
    assert world.gateway.calls == [] and world.payments.charge_of(invoice.number) is None
    assert world.current(invoice).status is InvoiceStatus.UNPAID


def test_a_carried_invoice_is_never_charged_nor_paid_now(world):
    # Given an invoice issued carried into the next one (CARRY_BELOW_MINIMUM)
    invoice = dataclasses.replace(world.issue("0.12", "USD"), status=InvoiceStatus.CARRIED)
    # Then neither the worker's charge nor Pay now reach the gateway, and Pay now says why
    world.collection.charge(invoice)
    with pytest.raises(NotPayable, match="carried to your next invoice"):
        world.collection.pay_now(invoice)
    assert world.gateway.calls == [] and world.payments.charge_of(invoice.number) is None


def test_the_minimum_itself_is_charged(world):
    invoice = world.issue("0.50", "USD")
    assert world.collection.charge(invoice) == "succeeded"
    assert world.gateway.charges_of(invoice.number)[0].amount_minor == 50


def test_without_a_card_on_file_nothing_is_sent(world):
    world.payments.cards[7] = CardOnFile(customer="cus_ada", card=None)
    invoice = world.issue()
    assert world.collection.charge(invoice) == "no_card"
    assert world.gateway.calls == [] and world.payments.charge_of(invoice.number) is None


def test_a_declined_charge_records_the_reason_and_emails_a_pay_link_once(world):
    invoice = world.issue()
    world.gateway.default = "decline"
    assert world.collection.charge(invoice) == "failed"
    record = world.payments.charge_of(invoice.number)
    assert record.outcome == "failed" and record.reason == "Your card was declined."
    # the redelivered job, and Stripe's own payment_failed event for that PaymentIntent, add nothing
    assert world.collection.charge(invoice) == "already"
    failed_event = world.webhook(
        "evt_1", "payment_intent.payment_failed", intent_id=record.intent_id, invoice_number=invoice.number
    )
    assert failed_event == "failure_known"
    [mail] = world.mails("payment_failed")
    assert mail["invoice_url"] == f"https://billing.example.com/invoices/{invoice.number}"
    assert mail["reason"] == "Your card was declined."
    assert world.current(invoice).status is InvoiceStatus.UNPAID and world.lifted == []
    assert len(world.gateway.charges_of(invoice.number)) == 1


def test_an_automatic_charge_the_bank_wants_authenticated_asks_the_client_to_pay_now(world):
    invoice = world.issue()
    world.gateway.script = ["authenticate"]
    assert world.collection.charge(invoice) == "requires_action"
    [mail] = world.mails("payment_failed")
    assert mail["reason"] == "the card needs your confirmation"
    assert world.payments.charge_of(invoice.number).outcome == "requires_action"


# dunning ----------------------------------------------------------------------------------------


def dunning_days(world: World, invoice: Invoice, last_day: int, runs_a_day: int = 1) -> list[int]:
    """Runs the daily dunning from day 1 to ``last_day`` after issue; the days it retried the invoice."""
    retried = []
    for day in range(1, last_day + 1):
        today = world.on_day(day)
        for _ in range(runs_a_day):
            summary = world.collection.dunning(today, [world.current(invoice)])
            retried += [day] * summary["retried"].count(invoice.number)
    return retried


def test_a_card_is_known_to_decline_only_after_its_own_charge_of_an_unpaid_invoice_failed(world):
    # Given an invoice whose automatic charge was declined on the card on file
    invoice = world.issue()
    assert world.collection.declined_on(VISA, [invoice]) is None, "not charged yet"
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    # Then that card is known to decline on that invoice, with the gateway's reason
    assert world.collection.declined_on(VISA, [world.current(invoice)]) == (
        world.current(invoice),
        "Your card was declined.",
    )
    # and a card saved since, or an invoice no longer unpaid, is not
    mastercard = replace(VISA, payment_method="pm_mastercard", last4="4444")
    assert world.collection.declined_on(mastercard, [world.current(invoice)]) is None
    assert world.collection.declined_on(VISA, [replace(invoice, status=InvoiceStatus.PAID)]) is None


def test_dunning_retries_a_declined_charge_on_days_3_and_7_after_issue_only(world):
    # Given an automatic charge declined on the day of issue, and a card that keeps declining
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    # When the daily automation runs every day, twice a day, for two weeks
    retried = dunning_days(world, invoice, 14, runs_a_day=2)
    # Then the card was tried again on days 3 and 7, as attempts 2 and 3, and each failure was emailed
    assert retried == [3, 7]
    assert [i.attempt for i in world.gateway.charges_of(invoice.number)] == [1, 2, 3]
    assert len(world.mails("payment_failed")) == 3


def test_dunning_follows_the_configured_days():
    world = World(DUNNING_DAYS="2,5,9")
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    assert dunning_days(world, invoice, 12) == [2, 5, 9]


def test_a_dunning_retry_that_succeeds_pays_the_invoice_and_stops(world):
    invoice = world.issue()
    world.gateway.script = ["decline", "succeed"]
    world.collection.charge(invoice)
    today = world.on_day(3)
    summary = world.collection.dunning(today, [world.current(invoice)])
    assert summary["paid"] == [invoice.number] and world.current(invoice).status is InvoiceStatus.PAID
    assert len(world.mails("receipt")) == 1 and world.lifted == [invoice.number]
    # the paid invoice is no longer unpaid; handed in anyway, it is not charged again
    assert world.collection.dunning(world.on_day(7), [invoice])["retried"] == []
    assert len(world.gateway.charges_of(invoice.number)) == 2


def test_dunning_leaves_invoices_never_charged_and_charges_in_flight_alone(world):
    never = world.issue(client_id=8)  # no card on file: never attempted
    in_flight = world.issue(month=2)
    world.payments.claim_charge(in_flight.number, 1, world.clock.now(), CHARGE_LEASE)
    summary = world.collection.dunning(world.clock.now().date(), [never, in_flight])
    assert summary == {"retried": [], "paid": [], "failed": [], "noCard": [], "errors": []}
    assert world.gateway.calls == []


def test_missed_dunning_days_are_caught_up_by_one_retry_even_when_the_job_runs_twice(world):
    # Given a declined automatic charge, and a daily job that did not run on days 1 to 7 after issue
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    # When it runs twice on day 8 (a retried scheduled run, or an operator's {"schedule": "daily"})
    first = world.collection.dunning(world.on_day(8), [world.current(invoice)])
    second = world.collection.dunning(world.on_day(8), [world.current(invoice)])
    # Then the card was charged once that day, as attempt 2, and one failure was emailed for it
    assert (first["failed"], second["retried"]) == ([invoice.number], [])
    assert [i.attempt for i in world.gateway.charges_of(invoice.number)] == [1, 2]
    assert world.payments.charge_of(invoice.number).attempted_on == world.on_day(8)
    assert len(world.mails("payment_failed")) == 2
    # and the days after it make no second catch-up retry: the backlog was one retry
    assert dunning_days(world, invoice, 20)[8:] == []
    assert len(world.gateway.charges_of(invoice.number)) == 2


def test_a_missed_dunning_day_is_caught_up_and_the_next_dunning_day_still_retries(world):
    # Given a declined charge and a daily job that missed day 3 (it runs again on day 5)
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    retried = []
    for day in (1, 2, 5, 6, 7, 7, 8):
        summary = world.collection.dunning(world.on_day(day), [world.current(invoice)])
        retried += [day] * len(summary["retried"])
    # Then day 3's retry was made on day 5, and day 7's on day 7: once each
    assert retried == [5, 7]
    assert [i.attempt for i in world.gateway.charges_of(invoice.number)] == [1, 2, 3]


def test_no_dunning_retry_on_the_day_the_client_tried_pay_now(world):
    # Given a declined automatic charge, and the client's own Pay now declined on day 3
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    world.on_day(3)
    world.collection.pay_now(world.current(invoice))
    # When the daily job runs later that day, and on day 7
    assert world.collection.dunning(world.on_day(3), [world.current(invoice)])["retried"] == []
    assert world.collection.dunning(world.on_day(7), [world.current(invoice)])["retried"] == [invoice.number]
    # Then the card was tried on day 0, by the client on day 3, and by dunning on day 7
    assert [i.attempt for i in world.gateway.charges_of(invoice.number)] == [1, 2, 3]


def test_a_charge_recorded_without_its_day_is_retried_on_its_dunning_day(world):
    # Given a declined attempt 1 recorded before attempts kept their day
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    world.payments.charges[invoice.number] = replace(
        world.payments.charge_of(invoice.number), attempted_on=None
    )
    # Then it is retried on day 3 after issue, as before
    assert dunning_days(world, invoice, 3) == [3]


def test_dunning_reports_a_client_without_a_card_as_no_card_not_retried(world):
    # Given a declined automatic charge, then the client removed the card
    invoice = world.issue()
    world.gateway.default = "decline"
    world.collection.charge(invoice)
    world.collection.remove_card(7)
    # When its dunning day comes
    summary = world.collection.dunning(world.on_day(3), [world.current(invoice)])
    # Then nothing was charged, and the summary says why
    assert summary["noCard"] == [invoice.number] and summary["retried"] == [] and summary["failed"] == []
    assert len(world.gateway.charges_of(invoice.number)) == 1
    # and a card added later is tried on the next run
    world.payments.cards[7] = CardOnFile(customer="cus_ada", card=VISA)
    world.gateway.default = "succeed"
    assert world.collection.dunning(world.on_day(4), [world.current(invoice)])["paid"] == [invoice.number]


def test_dunning_finishes_an_attempt_that_never_finished_without_charging_again(world):
    invoice = world.issue()
    world.gateway.script = ["timeout"]
    with pytest.raises(GatewayError):
        world.collection.charge(invoice)
    summary = world.collection.dunning(world.on_day(1), [world.current(invoice)])
    assert summary["paid"] == [invoice.number]
    assert len(world.gateway.charges_of(invoice.number)) == 1


def test_a_gateway_outage_during_dunning_is_counted_and_the_others_go_on(world):
    first, second = world.issue(), world.issue(month=2)
    world.gateway.default = "decline"
    world.collection.charge(first)
    world.collection.charge(second)
    world.gateway.script = ["down", "succeed"]
    summary = world.collection.dunning(world.on_day(3), [first, second])
    assert summary["errors"] == [f"{first.number}: GatewayError"] and summary["paid"] == [second.number]


# webhooks ---------------------------------------------------------------------------------------


def test_payment_intent_succeeded_marks_paid_sends_one_receipt_and_lifts_the_suspension(world):
    # Given an on-session payment still processing
    invoice = world.issue()
    world.gateway.script = ["processing"]
    world.collection.pay_now(invoice)
    intent = world.gateway.charges_of(invoice.number)[0]
    # When Stripe says it succeeded, twice under the event's id and once more under another event
    assert (
        world.webhook("evt_1", "payment_intent.succeeded", intent_id=intent.id, invoice_number=invoice.number)
        == "paid"
    )
    assert (
        world.webhook("evt_1", "payment_intent.succeeded", intent_id=intent.id, invoice_number=invoice.number)
        == "duplicate"
    )
    world.webhook("evt_2", "payment_intent.succeeded", intent_id=intent.id, invoice_number=invoice.number)
    # Then the invoice is paid by that card payment, with one receipt and one suspension lift
    assert world.current(invoice).payment_reference == f"card {intent.id}"
    assert len(world.mails("receipt")) == 1 and world.lifted == [invoice.number]


def test_a_replayed_failure_event_emails_once(world):
    invoice = world.issue()
    world.gateway.script = ["processing"]
    world.collection.pay_now(invoice)
    intent = world.gateway.charges_of(invoice.number)[0]
    for _ in range(3):
        world.webhook(
            "evt_9",
            "payment_intent.payment_failed",
            intent_id=intent.id,
            invoice_number=invoice.number,
            reason="insufficient_funds",
        )
    [mail] = world.mails("payment_failed")
    assert mail["reason"] == "insufficient_funds"
    record = world.payments.charge_of(invoice.number)
    assert (record.outcome, record.reason) == ("failed", "insufficient_funds")


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "customer.created"},
        {"type": "payment_intent.created", "intent_id": "pi_1", "invoice_number": "INV-000001"},
        {"type": "payment_intent.succeeded"},  # not one of ours: no invoice in its metadata
        {"type": "payment_intent.succeeded", "intent_id": "pi_x", "invoice_number": "INV-999999"},
    ],
)
def test_events_we_do_not_handle_are_acknowledged_and_ignored(world, fields):
    invoice = world.issue()
    assert world.webhook("evt_7", **{"kind": fields.pop("type"), **fields}) == "ignored"
    assert world.payments.event_seen("evt_7") and world.mailer.sent == []
    assert world.current(invoice).status is InvoiceStatus.UNPAID


@pytest.mark.parametrize("signature", [None, "", "0" * 64])
def test_an_unsigned_or_forged_event_is_refused_and_not_stored(world, signature):
    invoice = world.issue()
    payload, _ = world.gateway.event(
        PaymentEvent(
            id="evt_f", type="payment_intent.succeeded", intent_id="pi_1", invoice_number=invoice.number
        )
    )
    with pytest.raises(BadEvent):
        world.collection.on_event(payload, signature)
    assert not world.payments.event_seen("evt_f") and world.current(invoice).status is InvoiceStatus.UNPAID


def test_charge_refunded_is_recorded(world):
    invoice = world.issue()
    world.collection.charge(invoice)
    intent = world.gateway.charges_of(invoice.number)[0]
    outcome = world.webhook(
        "evt_r", "charge.refunded", intent_id=intent.id, invoice_number=invoice.number, refunded_minor=234
    )
    assert outcome == "refund_recorded" and world.payments.charge_of(invoice.number).refunded_minor == 234


# refunds ----------------------------------------------------------------------------------------


def paid_by_card(world: World, total: str = "12.34", currency: str = "USD") -> Invoice:
    invoice = world.issue(total, currency)
    assert world.collection.charge(invoice) == "succeeded"
    return world.current(invoice)


def test_a_full_refund_refunds_what_was_paid(world):
    invoice = paid_by_card(world)
    result = world.collection.refund(invoice, None, "service not delivered")
    assert result == {
        "invoice": invoice.number,
        "refund": "1",
        "amount": "12.34",
        "refunded": "12.34",
        "currency": "USD",
        "reason": "service not delivered",
    }
    intent = world.gateway.charges_of(invoice.number)[0]
    assert world.gateway.refunds == [(intent.id, 1234, "service not delivered")]
    record = world.payments.charge_of(invoice.number)
    assert (record.refunded_total, record.pending_refund) == (1234, None)


def test_a_partial_refund_then_the_rest_never_more(world):
    invoice = paid_by_card(world)
    assert world.collection.refund(invoice, Decimal("5.00"), "goodwill")["refunded"] == "5.00"
    with pytest.raises(NotPayable, match=r"7\.34 USD left to refund"):
        world.collection.refund(invoice, Decimal("7.35"), "too much")
    assert world.collection.refund(invoice, None, "the rest")["refunded"] == "12.34"
    with pytest.raises(NotPayable, match=r"0\.00 USD left to refund"):
        world.collection.refund(invoice, None, "again")
    assert [amount for _, amount, _ in world.gateway.refunds] == [500, 734]


def refunded_event(world: World, invoice: Invoice, event_id: str, total_minor: int) -> str:
    intent = world.gateway.charges_of(invoice.number)[0]
    return world.webhook(
        event_id,
        "charge.refunded",
        intent_id=intent.id,
        invoice_number=invoice.number,
        refunded_minor=total_minor,
    )


def test_a_refund_retried_after_a_crash_and_the_webhook_is_the_same_refund(world):
    # Given a refund of 5.00 Stripe made, whose answer our store did not record (the function died)
    invoice = paid_by_card(world)
    world.payments.fail_next_finish_refund = 1
    with pytest.raises(RuntimeError):
        world.collection.refund(invoice, Decimal("5.00"), "goodwill")
    # and Stripe's charge.refunded event, recording the 5.00 refunded, in between
    assert refunded_event(world, invoice, "evt_r1", 500) == "refund_recorded"
    # When the operator sends the same payload again: at once (its holder may still be at Stripe), then later
    with pytest.raises(NotPayable, match="refund 1 of invoice INV-000001 may be at the gateway right now"):
        world.collection.refund(invoice, Decimal("5.00"), "goodwill")
    world.clock.advance(seconds=REFUND_LEASE.total_seconds() + 1)
    result = world.collection.refund(invoice, Decimal("5.00"), "goodwill")
    # Then it is the same refund (number 1, found at Stripe by its key): 5.00 refunded in all, not 10.00
    assert (result["refund"], result["amount"], result["refunded"]) == ("1", "5.00", "5.00")
    assert world.gateway.refunds == [(world.gateway.charges_of(invoice.number)[0].id, 500, "goodwill")]
    record = world.payments.charge_of(invoice.number)
    assert (record.refunds_done_minor, record.refunded_minor, record.pending_refund) == (500, 500, None)
    # and the next payload is a new refund, of what is left
    assert world.collection.refund(invoice, None, "the rest")["refunded"] == "12.34"
    assert [amount for _, amount, _ in world.gateway.refunds] == [500, 734]


def test_a_refund_whose_answer_was_lost_is_made_once_even_after_stripe_forgot_its_key(world):
    # Given a refund Stripe made but whose answer was lost, retried only after Stripe pruned its key
    invoice = paid_by_card(world)
    world.gateway.lose_next_refund = True
    with pytest.raises(GatewayError):
        world.collection.refund(invoice, None, "cancelled")
    world.gateway.forget_idempotency_keys()
    world.clock.advance(seconds=25 * 3600)
    refunded_event(world, invoice, "evt_r1", 1234)
    # When the operator retries it
    result = world.collection.refund(invoice, None, "cancelled")
    # Then the refund is found by the key it carries, and recorded: one refund at Stripe
    assert (result["refund"], result["refunded"]) == ("1", "12.34")
    assert len(world.gateway.refunds) == 1 and world.gateway.calls.count("refund") == 1


def test_another_amount_while_a_refund_is_pending_is_refused_naming_it(world):
    # Given a refund of 5.00 pending (made at Stripe, its answer not recorded)
    invoice = paid_by_card(world)
    world.payments.fail_next_finish_refund = 1
    with pytest.raises(RuntimeError):
        world.collection.refund(invoice, Decimal("5.00"), "goodwill")
    # When the operator asks for another amount, or for all that is left
    for amount in (Decimal("2.00"), None):
        with pytest.raises(NotPayable) as refused:
            world.collection.refund(invoice, amount, "other")
        # Then it is refused, naming the pending refund and how to finish it
        message = str(refused.value)
        assert "refund 1 of invoice INV-000001 (5.00 USD, 'goodwill') is pending" in message
        assert '{"refund": "INV-000001", "amount": "5.00"}' in message
    assert len(world.gateway.refunds) == 1
    # and finishing it (the same payload, whatever reason it now gives) lets the next one through
    world.clock.advance(seconds=REFUND_LEASE.total_seconds() + 1)
    assert world.collection.refund(invoice, Decimal("5.00"), "again")["reason"] == "goodwill"
    assert world.collection.refund(invoice, Decimal("2.00"), "other")["refunded"] == "7.00"


def test_the_same_refund_sent_while_it_is_at_stripe_is_refused_and_made_once(world):
    # Given a refund payload whose Stripe call is under way when the operator sends it again
    invoice = paid_by_card(world)
    refused: list[str] = []

    def sent_again() -> None:
        try:
            world.collection.refund(invoice, Decimal("5.00"), "goodwill")
        except NotPayable as why:
            refused.append(str(why))

    world.gateway.on_refund = sent_again
    # When the first finishes
    assert world.collection.refund(invoice, Decimal("5.00"), "goodwill")["refunded"] == "5.00"
    # Then the second was told to look again later, and one refund was made
    assert len(refused) == 1 and "may be at the gateway right now" in refused[0]
    assert world.gateway.calls.count("refund") == 1 and len(world.gateway.refunds) == 1


def test_a_refund_stripe_refused_is_released_for_the_next_payload(world):
    # Given a refund of all that is left, after Stripe's dashboard refunded 10.00 without our knowing yet
    invoice = paid_by_card(world)
    world.gateway.intents[world.gateway.charges_of(invoice.number)[0].id].refunded_minor = 1000
    with pytest.raises(GatewayRefused):
        world.collection.refund(invoice, None, "cancelled")
    assert world.payments.charge_of(invoice.number).pending_refund is None
    # When the dashboard's charge.refunded arrives and the operator asks again
    refunded_event(world, invoice, "evt_dash", 1000)
    result = world.collection.refund(invoice, None, "cancelled")
    # Then the rest (2.34) is refunded, as refund 2 under its own key
    assert (result["refund"], result["amount"]) == ("2", "2.34")
    # and the refunded total is the dashboard's and ours: all of it
    assert result["refunded"] == "12.34"
    refunded_event(world, invoice, "evt_late", 1000)  # the dashboard's event, delivered again late
    assert world.payments.charge_of(invoice.number).refunded_total == 1234


def test_a_charge_refunded_event_racing_the_claim_never_lets_more_than_was_paid_be_refunded(world):
    # Given the dashboard's refund of 10.00 recorded by the webhook between the payload's read and its claim
    invoice = paid_by_card(world)
    charge_of = world.payments.charge_of
    raced: list[str] = []

    def read_then_the_event_lands(number: str):
        record = charge_of(number)
        if not raced:
            raced.append(refunded_event(world, invoice, "evt_dash", 1000))
        return record

    world.payments.charge_of = read_then_the_event_lands  # type: ignore[method-assign]
    # When the operator's refund of 5.00 is claimed on the read from before the event
    with pytest.raises(NotPayable, match=r"2\.34 USD left to refund"):
        world.collection.refund(invoice, Decimal("5.00"), "goodwill")
    # Then its claim was refused by the store's condition, and nothing was sent to Stripe
    assert raced == ["refund_recorded"] and "refund" not in world.gateway.calls


def test_an_older_charge_refunded_event_does_not_lower_the_refunded_total(world):
    invoice = paid_by_card(world)
    refunded_event(world, invoice, "evt_2", 700)
    refunded_event(world, invoice, "evt_1", 200)  # Stripe does not order its events
    assert world.payments.charge_of(invoice.number).refunded_minor == 700
    with pytest.raises(NotPayable, match=r"5\.34 USD left to refund"):
        world.collection.refund(invoice, Decimal("6.00"), "too much")


def test_an_invoice_not_paid_by_card_is_not_refunded_through_the_gateway(world):
    by_transfer = world.issue()
    world.billing.mark_paid(by_transfer.number, "bank ref 42", world.clock.now())
    unpaid = world.issue(month=2)
    for invoice in (world.current(by_transfer), unpaid):
        with pytest.raises(NotPayable, match="not paid by card"):
            world.collection.refund(invoice, None, "refund")
    assert "refund" not in world.gateway.calls


@pytest.mark.parametrize(("amount", "currency", "total"), [("1.005", "USD", "12.34"), ("5.5", "JPY", "1200")])
def test_a_refund_finer_than_the_currencys_minor_unit_is_refused(world, amount, currency, total):
    invoice = paid_by_card(world, total, currency)
    with pytest.raises(ValueError, match="more decimals"):
        world.collection.refund(invoice, Decimal(amount), "refund")
    assert "refund" not in world.gateway.calls


@pytest.mark.parametrize("amount", ["0", "-1.00"])
def test_a_refund_of_nothing_or_less_is_refused(world, amount):
    invoice = paid_by_card(world)
    with pytest.raises(NotPayable):
        world.collection.refund(invoice, Decimal(amount), "refund")
    assert "refund" not in world.gateway.calls


# pay now ----------------------------------------------------------------------------------------


def test_pay_now_is_refused_for_an_invoice_that_is_not_unpaid(world):
    invoice = paid_by_card(world)
    with pytest.raises(NotPayable, match="already paid"):
        world.collection.pay_now(invoice)
    void = replace(world.issue(month=2), status=InvoiceStatus.VOID)
    with pytest.raises(NotPayable, match="cancelled"):
        world.collection.pay_now(void)
    assert world.gateway.calls.count("charge") == 1


def test_pay_now_without_a_card_asks_for_one(world):
    world.payments.cards.clear()
    with pytest.raises(NotPayable, match="Add a card first"):
        world.collection.pay_now(world.issue())
    assert world.gateway.calls == []


def test_pay_now_after_a_declined_charge_is_the_next_attempt_on_session_without_a_failure_email(world):
    invoice = world.issue()
    world.gateway.script = ["decline", "succeed"]
    world.collection.charge(invoice)
    result = world.collection.pay_now(world.current(invoice))
    assert result.status == "succeeded" and world.current(invoice).status is InvoiceStatus.PAID
    _, second = world.gateway.charges_of(invoice.number)
    assert (second.attempt, second.off_session) == (2, False)
    assert len(world.mails("payment_failed")) == 1 and len(world.mails("receipt")) == 1


def test_pay_now_declined_says_why_and_emails_nothing(world):
    invoice = world.issue()
    world.gateway.default = "decline"
    result = world.collection.pay_now(invoice)
    assert (result.status, result.reason) == ("failed", "Your card was declined.")
    assert world.mails("payment_failed") == []


def test_pay_now_with_3d_secure_authenticates_the_one_payment_intent(world):
    # Given Pay now answered by the bank's request for 3-D Secure
    invoice = world.issue()
    world.gateway.script = ["authenticate"]
    first = world.collection.pay_now(invoice)
    assert first.status == "requires_action" and first.client_secret
    # When the client comes back to the page before authenticating: the same PaymentIntent again
    again = world.collection.pay_now(world.current(invoice))
    assert again.intent_id == first.intent_id and len(world.gateway.charges_of(invoice.number)) == 1
    # and a payment that is not this invoice's is refused
    with pytest.raises(NotPayable, match="not one of this invoice"):
        world.collection.after_authentication(invoice, "pi_elsewhere")
    # Then, authenticated, it pays the invoice once
    world.gateway.authenticate(first.intent_id)
    assert world.collection.after_authentication(invoice, first.intent_id) == "succeeded"
    assert world.current(invoice).status is InvoiceStatus.PAID and len(world.mails("receipt")) == 1
    assert world.payments.charge_of(invoice.number).outcome == "succeeded"


def test_a_failed_authentication_lets_the_client_try_again_as_a_new_attempt(world):
    invoice = world.issue()
    world.gateway.script = ["authenticate", "succeed"]
    first = world.collection.pay_now(invoice)
    world.gateway.authenticate(first.intent_id, passes=False)
    assert world.collection.after_authentication(invoice, first.intent_id) == "requires_payment_method"
    assert world.payments.charge_of(invoice.number).outcome == "failed"
    assert world.collection.pay_now(invoice).status == "succeeded"
    assert [i.attempt for i in world.gateway.charges_of(invoice.number)] == [1, 2]


def test_pay_now_while_a_charge_is_in_flight_is_refused_not_doubled(world):
    invoice = world.issue()
    world.payments.claim_charge(invoice.number, 1, world.clock.now(), CHARGE_LEASE)
    with pytest.raises(NotPayable, match="being charged"):
        world.collection.pay_now(invoice)
    assert world.gateway.calls == []


def test_pay_now_while_a_dunning_retry_charges_is_refused_and_the_card_charged_once(world):
    # Given a declined automatic charge whose dunning retry is at the gateway when the client clicks Pay now
    invoice = world.issue()
    world.gateway.script = ["decline", "succeed"]
    world.collection.charge(invoice)
    refused: list[str] = []

    def client_clicks_pay_now() -> None:
        try:
            world.collection.pay_now(world.current(invoice))
        except NotPayable as why:
            refused.append(str(why))

    world.gateway.on_charge = client_clicks_pay_now
    # When the retry finishes
    summary = world.collection.dunning(world.on_day(3), [world.current(invoice)])
    # Then the client was told to look again, and the card was charged by the retry alone
    assert summary["paid"] == [invoice.number]
    assert refused == ["Your card is being charged for this invoice. Look again in a few minutes."]
    assert len(world.gateway.charges_of(invoice.number)) == 2 and len(world.mails("receipt")) == 1


# the card on file -------------------------------------------------------------------------------


def test_saving_a_card_creates_the_customer_once_and_replacing_it_detaches_the_old_one(world):
    world.payments.cards.clear()
    secret = world.collection.start_card_setup(7, "ada@example.com")
    world.collection.start_card_setup(7, "ada@example.com")  # the page opened twice: still one customer
    setup = world.gateway.confirm_setup(secret, VISA)
    assert world.collection.finish_card_setup(7, setup) == VISA
    assert world.collection.card_of(7) == VISA and world.gateway.calls.count("create_customer") == 1
    master = replace(VISA, payment_method="pm_master", brand="mastercard", last4="4444")
    setup = world.gateway.confirm_setup(world.collection.start_card_setup(7, "ada@example.com"), master)
    world.collection.finish_card_setup(7, setup)
    assert world.collection.card_of(7) == master and "pm_visa" not in world.gateway.attached
    world.collection.remove_card(7)
    assert world.collection.card_of(7) is None and "pm_master" not in world.gateway.attached


def test_a_card_setup_of_another_client_or_unfinished_is_not_saved(world):
    world.payments.cards.clear()
    world.collection.start_card_setup(7, "ada@example.com")
    other = world.gateway.confirm_setup(world.gateway.setup_intent(customer="cus_ada"), VISA)
    world.gateway.customers["cus_bob"] = "bob@example.com"
    world.gateway.setups[other].customer = "cus_bob"
    unfinished = world.gateway.setup_intent(customer=world.payments.cards[7].customer).removesuffix(
        "_secret_x"
    )
    for setup in (other, unfinished, "seti_unknown"):
        with pytest.raises(CardNotSaved):
            world.collection.finish_card_setup(7, setup)
    assert world.collection.card_of(7) is None


# events out of order ----------------------------------------------------------------------------


def test_a_late_failure_event_of_an_earlier_attempt_does_not_undo_the_current_one(world):
    # Given an automatic charge declined (attempt 1), then Pay now waiting for 3-D Secure (attempt 2)
    invoice = world.issue()
    world.gateway.script = ["decline", "authenticate", "succeed"]
    world.collection.charge(invoice)
    declined = world.gateway.charges_of(invoice.number)[0]
    pending = world.collection.pay_now(world.current(invoice))
    # When attempt 1's payment_failed event arrives only now (Stripe neither orders nor times its events)
    world.webhook(
        "evt_late", "payment_intent.payment_failed", intent_id=declined.id, invoice_number=invoice.number
    )
    # Then attempt 2 stands: no second failure email, no dunning charge while it can still be authenticated
    assert len(world.mails("payment_failed")) == 1
    assert world.payments.charge_of(invoice.number).outcome == "requires_action"
    assert world.collection.dunning(world.on_day(7), [world.current(invoice)])["retried"] == []
    # and the client's authentication pays the invoice with the one PaymentIntent that succeeded
    world.gateway.authenticate(pending.intent_id)
    assert world.collection.after_authentication(invoice, pending.intent_id) == "succeeded"
    statuses = [i.status for i in world.gateway.charges_of(invoice.number)]
    assert statuses == ["requires_payment_method", "succeeded"]


def test_a_failure_event_arriving_while_the_next_attempt_charges_leaves_that_attempt_alone(world):
    # Given a declined attempt 1, and its payment_failed event delivered during attempt 2's charge
    invoice = world.issue()
    world.gateway.script = ["decline", "succeed"]
    world.collection.charge(invoice)
    declined = world.gateway.charges_of(invoice.number)[0]
    world.gateway.on_charge = lambda: world.webhook(
        "evt_late", "payment_intent.payment_failed", intent_id=declined.id, invoice_number=invoice.number
    )
    # When the dunning retry succeeds
    summary = world.collection.dunning(world.on_day(3), [world.current(invoice)])
    # Then the client gets the receipt, not a failure email for a charge that did not fail
    assert summary["paid"] == [invoice.number] and world.gateway.calls.count("charge") == 2
    assert len(world.mails("payment_failed")) == 1 and len(world.mails("receipt")) == 1
    assert world.payments.charge_of(invoice.number).outcome == "succeeded"
