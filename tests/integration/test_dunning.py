"""Dunning: the daily automation retries a declined automatic charge on the configured days after issue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from postpay.billing.collection import CHARGE_LEASE
from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke
from tests.integration.payment_helpers import DECLINED_AFTER_ATTACH, JUNE_2026, VISA, card_on_file, intents_of

SEPTEMBER = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]


def daily(functions, days_after_today: int) -> dict:
    at = datetime.now(UTC).replace(hour=12) + timedelta(days=days_after_today)
    return invoke(functions, {"source": "aws.events", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")})


def declined_invoice(stack, functions, worker):
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account, DECLINED_AFTER_ATTACH)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    return account, item, customer


def failure_mails(stack, account):
    return [m for m in stack.mails_to(account.email) if "could not charge" in m.subject]


def test_declined_charges_are_retried_on_days_3_and_7_each_failure_emailed(stack, functions, worker):
    # Given an invoice issued today whose automatic charge was declined (one email)
    account, item, customer = declined_invoice(stack, functions, worker)
    assert len(intents_of(stack, customer)) == 1 and len(failure_mails(stack, account)) == 1
    # When the daily automation runs on days 2, 3 (twice: a duplicate schedule), 7 and 8
    daily(functions, 2)
    assert len(intents_of(stack, customer)) == 1, "no retry before day 3"
    day3 = daily(functions, 3)
    daily(functions, 3)
    assert item.number in day3["dunning"]["failed"]
    assert len(intents_of(stack, customer)) == 2 and len(failure_mails(stack, account)) == 2
    daily(functions, 7)
    daily(functions, 8)
    # Then exactly two retries were made, each failure emailed, and the invoice is still unpaid
    assert len(intents_of(stack, customer)) == 3 and len(failure_mails(stack, account)) == 3
    record = functions["automation"].container.payments.charge_of(item.number)
    assert (record.attempt, record.outcome) == (3, "failed")


def test_a_retry_with_a_replaced_card_pays_the_invoice(stack, functions, worker):
    account, item, customer = declined_invoice(stack, functions, worker)
    card_on_file(stack, functions["automation"].container, account, VISA)
    day3 = daily(functions, 3)
    assert item.number in day3["dunning"]["paid"]
    invoice = functions["automation"].container.billing.invoice_by_number(item.number)
    assert invoice.status.value == "paid"
    assert [i.status for i in intents_of(stack, customer)].count("succeeded") == 1


def test_a_charge_whose_try_never_finished_is_finished_by_the_next_daily_run(stack, functions, worker):
    # Given an invoice whose automatic charge was claimed but never finished (its job died before Stripe
    # was called, or Stripe stayed down through every attempt) and whose lease has run out
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    customer = card_on_file(stack, container, account, VISA)
    long_ago = datetime.now(UTC) - CHARGE_LEASE - timedelta(minutes=1)
    assert container.payments.claim_charge(item.number, 1, long_ago, CHARGE_LEASE)
    # When the daily automation runs (twice)
    first = daily(functions, 0)
    daily(functions, 0)
    # Then that try is finished: one PaymentIntent, the invoice paid
    assert item.number in first["dunning"]["paid"]
    assert [i.status for i in intents_of(stack, customer)] == ["succeeded"]
    assert container.billing.invoice_by_number(item.number).status.value == "paid"


def test_missed_dunning_days_make_one_retry_however_often_the_job_runs_that_day(stack, functions, worker):
    # Given a declined automatic charge, and a daily job that did not run on days 1 to 7 after issue
    account, item, customer = declined_invoice(stack, functions, worker)
    # When it runs twice on day 8 (a retried schedule, or the operator's {"schedule": "daily"}), then on day 9
    day8 = daily(functions, 8)
    again = daily(functions, 8)
    daily(functions, 9)
    # Then the backlog of two dunning days was one retry, on day 8: two charges in all, two failure emails
    assert day8["dunning"]["failed"] == [item.number] and again["dunning"]["retried"] == []
    assert len(intents_of(stack, customer)) == 2 and len(failure_mails(stack, account)) == 2
    record = functions["automation"].container.payments.charge_of(item.number)
    assert record.attempt == 2 and record.attempted_on == datetime.fromisoformat(day8["date"]).date()


def test_a_client_without_a_card_is_reported_as_no_card_not_retried(stack, functions, worker):
    account, item, customer = declined_invoice(stack, functions, worker)
    functions["automation"].container.collection.remove_card(account.client_id)
    day3 = daily(functions, 3)
    assert day3["dunning"]["noCard"] == [item.number] and day3["dunning"]["retried"] == []
    assert len(intents_of(stack, customer)) == 1
