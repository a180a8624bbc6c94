"""Invoicing jobs against in-memory ports: one invoice and one email per (client, period), whatever is
delivered twice, dies half-way or overlaps. The stores' transactions themselves are tested against moto in
tests/integration/test_invoicing*.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from postpay.billing.invoicing import EMAIL_LEASE, EmailPending, Invoicing, Job
from postpay.config import Settings
from postpay.models import Account, AccountStatus, Pricing
from postpay.periods import Period
from tests.unit.fakes import FakeAccounts, FakeBilling, FakeMailer, FakeQueue, FakeSolus, FixedClock
from tests.unit.test_config import BASE

OCTOBER = Period(date(2022, 10, 1), date(2022, 10, 31), "UTC")
USER = 12


def usage(*tokens: int) -> dict[str, Any]:
    servers = [
        {
            "id": 100 + i,
            "uuid": f"uuid-{i}",
            "name": f"web-{i}",
            "is_deleted": False,
            "plan": {"id": 3, "name": "Small", "tokens_per_hour": 7, "tokens_per_month": 5000},
            "hours": 700,
            "tokens": t,
        }
        for i, t in enumerate(tokens)
    ]
    return {
        "data": {
            "user_id": USER,
            "date_from": "2022-10-01",
            "date_to": "2022-10-31",
            "servers": servers,
            "total_tokens": sum(tokens),
        }
    }


class World:
    def __init__(self) -> None:
        self.settings = Settings.from_env(BASE)
        self.accounts, self.billing, self.queue = FakeAccounts(), FakeBilling(), FakeQueue()
        self.solus, self.mailer = FakeSolus(usage_by_user={USER: usage(4900, 100)}), FakeMailer()
        self.clock = FixedClock(datetime(2022, 11, 1, 0, 5, tzinfo=UTC))
        self.invoicing = Invoicing(
            settings=self.settings,
            accounts=self.accounts,
            billing=self.billing,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
            pricing=lambda: Pricing(Decimal("0.001"), "USD"),
            queue=self.queue,
        )
        self.accounts.add(
            Account(
                email="ada@example.com",
                client_id=7,
                name="Ada",
                company="",
                password_hash="x",
                status=AccountStatus.ENROLLED,
                created_at=datetime(2022, 1, 1, tzinfo=UTC),
                enrolled_at=datetime(2022, 1, 1, tzinfo=UTC),
                solus_user_id=USER,
            )
        )

    def run(self, run_id: str = "run-1") -> Job:
        self.billing.start_run(run_id, trigger="operator", period=OCTOBER.as_dict(), now=self.clock.now())
        return Job(run_id, 7, "ada@example.com", USER, OCTOBER)

    def deliver(self, job: Job, delivery: int = 1) -> str:
        return self.invoicing.attempt(job, delivery=delivery, remaining_ms=900_000)

    def invoice_emails(self) -> list[str]:
        return [m.context["invoice"].number for m in self.mailer.sent if m.template == "invoice"]


@pytest.fixture
def world() -> World:
    return World()


def test_a_job_issues_one_numbered_invoice_and_emails_it_with_its_pdf(world):
    outcome = world.deliver(world.run())
    invoice = world.billing.billed(7, OCTOBER.key)[1]
    assert outcome == "invoiced" and invoice.total == Decimal("5.00")
    assert world.invoice_emails() == [invoice.number] and world.billing.counter == 1
    assert world.mailer.sent[0].attachments[0][1] == "application/pdf"
    assert world.billing.run("run-1").counts["invoiced"] == 1


def test_a_duplicate_delivery_issues_and_sends_nothing_more(world):
    job = world.run()
    world.deliver(job)
    assert world.deliver(job, delivery=2) == "invoiced"
    assert world.billing.counter == 1 and len(world.invoice_emails()) == 1
    assert world.billing.run("run-1").counts["invoiced"] == 1


def test_a_crash_between_the_invoice_and_its_email_sends_the_email_once_on_redelivery(world):
    # Given a job whose invoice was written but whose email failed (SES down, or the worker died)
    job = world.run()
    world.mailer.fail_next = 1
    with pytest.raises(RuntimeError):
        world.deliver(job)
    assert world.billing.counter == 1 and world.invoice_emails() == []
    # When it is redelivered while the lease written with the invoice may still be someone's sending
    with pytest.raises(EmailPending):
        world.deliver(job, delivery=2)
    # Then, once the lease has expired, a redelivery sends it: one invoice, one email
    world.clock.advance(seconds=EMAIL_LEASE.total_seconds() + 1)
    assert world.deliver(job, delivery=3) == "invoiced"
    assert world.billing.counter == 1 and len(world.invoice_emails()) == 1
    assert world.deliver(job, delivery=4) == "invoiced" and len(world.invoice_emails()) == 1


def test_overlapping_runs_bill_the_month_once(world):
    # Given the month invoiced by a first run
    world.deliver(world.run("run-1"))
    # When a second run's job for the same client and month comes
    outcome = world.deliver(world.run("run-2"))
    # Then it records "already invoiced" with the first invoice's number, and issues and sends nothing
    assert outcome == "already_invoiced"
    assert world.billing.counter == 1 and len(world.invoice_emails()) == 1
    assert world.billing.outcome_items[("run-2", 7)]["number"] == world.invoice_emails()[0]


def test_no_usage_is_recorded_as_nothing_to_bill_once(world):
    world.solus.usage_by_user[USER] = usage()
    job = world.run()
    assert world.deliver(job) == "nothing_to_bill"
    assert world.deliver(job, delivery=2) == "nothing_to_bill"
    assert world.deliver(world.run("run-2")) == "nothing_to_bill"
    assert world.billing.counter == 0 and world.mailer.sent == []
    assert world.billing.run("run-1").counts["nothing_to_bill"] == 1


def test_solusvm_down_on_the_last_attempt_records_the_failure_and_a_redrive_replaces_it(world):
    # Given a job whose every attempt met SolusVM down
    job = world.run()
    world.solus.down = True
    with pytest.raises(Exception, match="timed out"):
        world.deliver(job, delivery=world.settings.invoice_max_attempts)
    assert world.billing.run("run-1").failures == {7: "SolusUnavailable: usage: timed out"}
    # When the operator redrives it once SolusVM is back
    world.solus.down = False
    assert world.deliver(job) == "invoiced"
    # Then the failure is replaced by the invoice in the run's counts
    counts = world.billing.run("run-1").counts
    assert counts["failed"] == 0 and counts["invoiced"] == 1


def test_a_job_past_its_attempts_is_recorded_as_failed_before_it_is_dead_lettered(world):
    job = world.run()
    with pytest.raises(Exception, match="did not finish"):
        world.deliver(job, delivery=world.settings.invoice_max_attempts + 1)
    assert world.billing.outcome_of("run-1", 7) == "failed" and world.billing.counter == 0


def test_a_scheduled_run_queues_one_job_per_enrolled_account_and_a_duplicate_event_queues_none(world):
    first = world.invoicing.start(OCTOBER, trigger="schedule")
    again = world.invoicing.start(OCTOBER, trigger="schedule")
    assert first.run_id == again.run_id == "scheduled-2022-10"
    assert [m["clientId"] for m in world.queue.messages] == [7]


def test_a_rebill_replaces_nothing_to_bill_but_never_an_invoice(world):
    # Given October recorded as nothing to bill, then usage reported late
    world.solus.usage_by_user[USER] = usage()
    world.deliver(world.run())
    world.solus.usage_by_user[USER] = usage(4900, 100)
    # When the operator re-bills it
    run = world.invoicing.rebill(7, OCTOBER)
    job = Job.from_message(world.queue.messages[-1])
    # Then one invoice is issued, and a second re-bill is refused
    assert world.deliver(job) == "invoiced" and job.run_id == run.run_id
    with pytest.raises(Exception, match="already has invoice"):
        world.invoicing.rebill(7, OCTOBER)
    assert world.billing.counter == 1
