"""Collection against localstripe over HTTP: the automatic charge on invoicing, exactly once."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from postpay.adapters.tables import AccountItem, InvoiceItem, PaymentItem
from postpay.billing.invoicing import Job
from postpay.periods import Period
from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke
from tests.integration.payment_helpers import (
    DECLINED_AFTER_ATTACH,
    JUNE_2026,
    VISA,
    card_on_file,
    intents_of,
    stripe_client,
)
from tests.integration.test_upkeep import daily, make_overdue, solus_status

SEPTEMBER = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]  # 5.00 USD


def test_an_invoice_is_charged_once_to_the_card_on_file_and_marked_paid(stack, functions, worker):
    # Given an enrolled client with a card on file and September usage
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account)
    # When September is invoiced twice (an operator re-run) and the worker drains the queue
    invoke(functions, {"invoicingDate": "2026-07-01"})
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    # Then one PaymentIntent for the total, succeeded, and the invoice is paid by card
    [item] = invoices_of(account.client_id)
    [intent] = intents_of(stack, customer)
    assert (intent.amount, intent.currency, intent.status) == (500, "usd", "succeeded")
    assert intent.metadata["invoice"] == item.number
    assert item.status == "paid" and item.payment_reference == f"card {intent.id}"
    # and one receipt, whatever ran twice
    assert len([m for m in stack.mails_to(account.email) if m.subject.startswith("Receipt")]) == 1


def test_duplicate_jobs_at_the_same_time_charge_once(stack, functions):
    # Given an issued, unpaid invoice of a client with a card
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account)
    invoice = _issued_without_charge(functions, account)
    # When eight copies of its job charge it at once
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _charge_or_pending(container, invoice), range(8)))
    # Then exactly one PaymentIntent, and every other copy stood down
    assert len(intents_of(stack, customer)) == 1
    assert outcomes.count("succeeded") == 1


def test_a_crash_after_the_gateway_charged_is_found_on_retry_not_charged_again(stack, functions, monkeypatch):
    # Given a job that charged at Stripe and died before recording it
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account)
    invoice = _issued_without_charge(functions, account)
    collection = container.collection

    def crash(*_args, **_kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(collection.payments, "record_charge", crash)
    with pytest.raises(SystemExit):
        collection.charge(invoice)
    monkeypatch.undo()
    assert len(intents_of(stack, customer)) == 1
    # When the redelivered job runs after the charge lease expired
    PaymentItem(f"charge#{invoice.number}").update(actions=[PaymentItem.lease_until.set(0)])
    outcome = collection.charge(invoice)
    # Then it found the first PaymentIntent: still one, and the invoice is paid with it
    [intent] = intents_of(stack, customer)
    assert outcome == "succeeded"
    assert container.billing.invoice_by_number(invoice.number).payment_reference == f"card {intent.id}"


def test_a_declined_card_records_the_reason_and_emails_a_pay_link_once(stack, functions, worker):
    # Given a client whose card on file declines every charge
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account, DECLINED_AFTER_ATTACH)
    # When September is invoiced and its job runs (and is redelivered)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    invoice = container.billing.invoice_by_number(item.number)
    assert container.collection.charge(invoice) == "already"
    # Then the invoice stays unpaid, the failure and its reason are recorded, one email links to Pay now
    assert item.status == "unpaid"
    record = container.payments.charge_of(item.number)
    assert (record.attempt, record.outcome) == (1, "failed") and record.reason
    [mail] = [m for m in stack.mails_to(account.email) if "could not charge" in m.subject]
    assert f"http://localhost:8080/invoices/{item.number}" in mail.html
    # and no PaymentIntent succeeded
    assert all(i.status != "succeeded" for i in intents_of(stack, customer))


def test_without_a_card_nothing_is_sent_to_stripe(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    assert item.status == "unpaid"
    assert functions["automation"].container.payments.charge_of(item.number) is None


def test_an_amount_below_the_minimum_charge_is_never_sent(stack, functions, worker):
    # 40 minutes of a 7 tokens/h server: 7 tokens = 0.01 USD
    container = functions["automation"].container
    tiny = [{"plan_id": 1, "created_at": "2026-06-30T23:20:00+00:00", "name": "tiny"}]
    account = enrolled_account(stack, functions, servers=tiny, enrolled_at=JUNE_2026)
    card_on_file(stack, container, account)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    assert json.loads(item.document)["total"] == "0.01" and item.status == "unpaid"
    assert container.payments.charge_of(item.number) is None


def _issued_without_charge(functions, account):
    """An issued invoice whose job has not charged yet: issued by a worker with collection switched off."""
    invoicing = functions["worker"].container.invoicing
    collect, invoicing.collect = invoicing.collect, None
    try:
        run_id = f"test-{uuid.uuid4().hex[:8]}"
        container = functions["worker"].container
        container.billing.start_run(
            run_id, trigger="test", period=_september().as_dict(), now=container.clock.now()
        )
        job = Job(run_id, account.client_id, account.email, account.solus_user_id, _september())
        invoicing.process(job, final_attempt=False)
    finally:
        invoicing.collect = collect
    [item] = invoices_of(account.client_id)
    return functions["worker"].container.billing.invoice_by_number(item.number)


def _september() -> Period:
    return Period.from_dict({"start": "2026-06-01", "end": "2026-06-30", "timezone": "UTC"})


def _charge_or_pending(container, invoice) -> str:
    from postpay.billing.collection import ChargePending

    try:
        return container.collection.charge(invoice)
    except ChargePending:
        return "pending"


def test_the_refund_payload_refunds_through_stripe_part_then_the_rest_never_more(stack, functions, worker):
    from postpay.billing.commands import PayloadError

    # Given an invoice of 5.00 USD paid by card
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, container, account)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    # When the operator refunds 2.00, then the rest
    part = invoke(functions, {"refund": item.number, "amount": "2.00", "reason": "outage credit"})
    rest = invoke(functions, {"refund": item.number})
    # Then Stripe holds refunds of 2.00 and 3.00 on the one PaymentIntent, and the invoice records 5.00
    assert (part["refunded"], rest["refunded"]) == ("2.00", "5.00")
    [intent] = intents_of(stack, customer)
    refunds = stripe_client(stack).refunds.list(params={"limit": 100}).data
    assert sorted(r.amount for r in refunds if r.payment_intent == intent.id) == [200, 300]
    assert container.payments.charge_of(item.number).refunded_total == 500
    # and nothing more can be refunded, nor a malformed amount
    for payload, says in (
        ({"refund": item.number, "amount": "0.01"}, "0.00 USD left to refund"),
        ({"refund": "INV-999999"}, "no invoice"),
        ({"refund": item.number, "amount": "abc"}, "positive decimal string"),
        ({"refund": item.number, "amount": 5}, "positive decimal string"),
        ({"refund": item.number, "amount": "1.234"}, "more decimals"),
    ):
        with pytest.raises(PayloadError, match=says):
            invoke(functions, payload)


def test_a_transfer_is_not_refunded_through_stripe(stack, functions, worker):
    from postpay.billing.commands import PayloadError

    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    invoke(functions, {"markPaid": item.number, "reference": "bank transfer 42"})
    with pytest.raises(PayloadError, match="not paid by card"):
        invoke(functions, {"refund": item.number})


def test_a_suspension_left_after_its_invoice_was_settled_is_lifted_when_the_next_is_paid_by_card(
    stack, functions, worker
):
    # Given a client suspended for a declined invoice that was then settled without lifting the suspension
    # (its markPaid found SolusVM down), and a working card on file
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    card_on_file(stack, container, account, DECLINED_AFTER_ATTACH)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [first] = invoices_of(account.client_id)
    make_overdue(first.number, days=15)
    assert first.number in daily(functions, date.today())["upkeep"]["suspended"]
    InvoiceItem.get(first.account_period).update(actions=[InvoiceItem.status.set("paid")])
    card_on_file(stack, container, account, VISA)
    # When the next month is invoiced and its automatic charge succeeds
    invoke(functions, {"invoicingDate": "2026-08-01"})
    drain(worker)
    # Then the worker's charge lifted the suspension
    assert solus_status(stack, account.solus_user_id) == "active"
    assert AccountItem.get(account.email).suspended_for is None
