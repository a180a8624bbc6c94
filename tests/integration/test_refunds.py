"""The refund payload against localstripe over HTTP: a refund is claimed before Stripe is asked, so a payload
retried after a crash is the same refund, whatever Stripe's charge.refunded event recorded in between.

localstripe ignores idempotency keys: what keeps the retry from refunding again here is the claim and the
look-up of the refund by the key its metadata carries (real Stripe's key covers its first day again)."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from postpay.billing.commands import PayloadError
from postpay.billing.refunds import REFUND_LEASE
from postpay.payments import PendingRefund
from tests.integration.billing_helpers import (
    ShiftedClock,
    drain,
    enrolled_account,
    invoices_of,
    invoke,
    logged_in,
)
from tests.integration.payment_helpers import JUNE_2026, card_on_file, intents_of, stripe_client
from tests.integration.test_webhook import event, post, signed

PASSWORD = "a long enough passphrase"
SEPTEMBER = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]  # 5.00 USD


def paid_by_card(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    customer = card_on_file(stack, functions["automation"].container, account)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    [intent] = intents_of(stack, customer)
    assert intent.status == "succeeded"
    return item, intent


def refunds_of(stack, intent) -> list[int]:
    page = stripe_client(stack).refunds.list(params={"payment_intent": intent.id, "limit": 100})
    return sorted(r.amount for r in page.auto_paging_iter())


def charge_refunded(functions, item, intent, total_minor: int) -> None:
    """Stripe's charge.refunded event for the invoice's charge: the charge's refunded total so far."""
    payload = event(
        "charge.refunded",
        {
            "id": f"ch_{intent.id}",
            "object": "charge",
            "payment_intent": intent.id,
            "amount_refunded": total_minor,
            "metadata": {"invoice": item.number},
        },
    )
    assert post(functions, payload, signed(payload))["statusCode"] == 200


def test_a_refund_retried_after_a_crash_and_its_webhook_is_made_once(stack, functions, worker, monkeypatch):
    # Given an invoice of 5.00 paid by card, and a refund of 2.00 that Stripe made but whose answer our
    # store never recorded (the function died after Stripe answered)
    container = functions["automation"].container
    item, intent = paid_by_card(stack, functions, worker)
    payload = {"refund": item.number, "amount": "2.00", "reason": "outage credit"}

    def died(*args, **kwargs):
        raise RuntimeError("the function died before recording the refund")

    monkeypatch.setattr(container.payments, "finish_refund", died)
    with pytest.raises(RuntimeError):
        invoke(functions, payload)
    monkeypatch.undo()
    assert refunds_of(stack, intent) == [200]
    # and Stripe's charge.refunded event recorded the 2.00 in between
    charge_refunded(functions, item, intent, 200)
    # When the operator asks for another amount, then sends the same payload again: at once (refused while
    # the dead function's lease on the refund lives), then once it has passed
    with pytest.raises(
        PayloadError, match=r"refund 1 of invoice .* \(2\.00 USD, 'outage credit'\) is pending"
    ):
        invoke(functions, {"refund": item.number, "amount": "1.00"})
    with pytest.raises(PayloadError, match="may be at the gateway right now"):
        invoke(functions, payload)
    monkeypatch.setattr(container.collection, "clock", ShiftedClock(REFUND_LEASE + timedelta(minutes=1)))
    again = invoke(functions, payload)
    # Then the retry finished refund 1: 2.00 refunded at Stripe, not 4.00
    assert (again["refund"], again["amount"], again["refunded"]) == ("1", "2.00", "2.00")
    assert refunds_of(stack, intent) == [200]
    record = container.payments.charge_of(item.number)
    assert (record.refunds_done_minor, record.pending_refund) == (200, None)
    # and the next payload is a new refund: the rest, 3.00
    rest = invoke(functions, {"refund": item.number})
    assert (rest["refund"], rest["amount"], rest["refunded"]) == ("2", "3.00", "5.00")
    assert refunds_of(stack, intent) == [200, 300]


def test_a_refund_in_the_stripe_dashboard_leaves_only_the_rest_to_refund(stack, functions, worker):
    # Given an invoice of 5.00 paid by card, 4.00 of it refunded in Stripe's dashboard (its event recorded)
    item, intent = paid_by_card(stack, functions, worker)
    stripe_client(stack).refunds.create(params={"payment_intent": intent.id, "amount": 400})
    charge_refunded(functions, item, intent, 400)
    # When the operator asks for 2.00, then for all that is left
    with pytest.raises(PayloadError, match=r"1\.00 USD left to refund"):
        invoke(functions, {"refund": item.number, "amount": "2.00"})
    rest = invoke(functions, {"refund": item.number, "reason": "cancelled"})
    # Then only the 1.00 left was refunded: never more than was paid
    assert (rest["amount"], rest["refunded"]) == ("1.00", "5.00")
    assert refunds_of(stack, intent) == [100, 400]


def test_the_payments_table_refuses_a_refund_claim_beyond_what_was_paid(functions):
    # Given a charge of 5.00 whose refunded total Stripe's event raised to 4.00 after a payload read 0.00
    payments = functions["automation"].container.payments
    number, now = f"INV-T{uuid.uuid4().hex[:8]}", datetime.now(UTC)
    payments.record_refund(number, 400, now)
    payments.record_refund(number, 100, now)  # an older event, delivered late: the total does not go down
    three = PendingRefund(seq=1, amount_minor=300, whole=False, reason="goodwill")
    # When the payload claims 3.00 on its read (at most 2.00 refunded before it), then 1.00 on a fresh one
    stale = payments.claim_refund(number, three, refunded_at_most=200, now=now, lease=REFUND_LEASE)
    one = replace(three, amount_minor=100)
    fresh = payments.claim_refund(number, one, refunded_at_most=400, now=now, lease=REFUND_LEASE)
    # Then only the second holds, once, and it is pending until finished
    assert (stale, fresh) == (False, True)
    assert not payments.claim_refund(number, one, refunded_at_most=400, now=now, lease=REFUND_LEASE)
    assert not payments.take_refund(number, 1, now, REFUND_LEASE), "its lease lives"
    assert payments.finish_refund(number, 1, 100, now) and not payments.finish_refund(number, 1, 100, now)
    record = payments.charge_of(number)
    assert (record.refunded_minor, record.refunds_done_minor, record.refund_seq) == (400, 100, 1)
    assert record.pending_refund is None


def test_a_refund_shows_on_the_invoice_in_the_operators_answers_and_export_and_is_emailed_once(
    stack, functions, worker, browser
):
    # Given an invoice of 5.00 paid by card, its client logged in
    item, _intent = paid_by_card(stack, functions, worker)
    logged_in(browser, item.email)
    before = invoke(functions, {"listInvoices": {"client": item.client_id}})["invoices"]
    assert [i["refunded"] for i in before] == ["0.00"]
    # When the operator refunds 2.00 of it
    invoke(functions, {"refund": item.number, "amount": "2.00", "reason": "outage credit"})
    # Then the client's invoice page and list show it, and so do listInvoices, account and the export
    page = browser.get(f"/invoices/{item.number}")
    assert page.has("Refunded") and page.has("2.00 USD") and not page.has("in full")
    assert browser.get("/invoices").has("partly refunded")
    [listed] = invoke(functions, {"listInvoices": {"client": item.client_id}})["invoices"]
    assert listed["refunded"] == "2.00"
    [row] = invoke(functions, {"account": item.client_id})["invoices"]
    assert row["refunded"] == "2.00"
    csv_rows = _csv_rows(invoke(functions, {"exportInvoices": item.period_key})["csv"])
    assert list(csv_rows[0])[-4:] == [
        "invoice",
        "refunded",
        "carried_in",
        "carried_to",
    ]  # refunded keeps its place
    assert {r["number"]: r["refunded"] for r in csv_rows if r["type"] == "invoice"}[item.number] == "2.00"
    # and the client got one email of it
    mails = [m for m in stack.mails_to(item.email) if m.subject == f"Refund: invoice {item.number}"]
    assert len(mails) == 1 and "2.00 USD" in mails[0].html
    # When the rest is refunded, the page says it is refunded in full and a second email says so
    invoke(functions, {"refund": item.number})
    page = browser.get(f"/invoices/{item.number}")
    assert page.has("5.00 USD in full")
    mails = [m for m in stack.mails_to(item.email) if m.subject == f"Refund: invoice {item.number}"]
    assert len(mails) == 2 and any("refunded in full" in m.html for m in mails)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))
