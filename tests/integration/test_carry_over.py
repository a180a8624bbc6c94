"""CARRY_BELOW_MINIMUM against the local stack and localstripe: an invoice below Stripe's minimum is carried
into the client's next invoice, never charged, taken exactly once under duplicate jobs, overlapping runs and
redeliveries, and shown on both invoices."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from postpay.adapters.tables import AccountItem, InvoiceItem
from postpay.billing.commands import PayloadError
from postpay.billing.invoicing import Job
from postpay.periods import Period
from tests.integration.billing_helpers import (
    drain,
    enrolled_account,
    invoice_mails,
    invoices_of,
    invoke,
    logged_in,
)
from tests.integration.payment_helpers import card_on_file, intents_of

# August to October 2026: months no other test bills, ended (the emulator reports no future usage); the
# accounts are enrolled after every month other tests' runs bill, so those runs never queue them
AUGUST_2026 = datetime(2026, 8, 1, tzinfo=UTC)
PASSWORD = "a long enough passphrase"


def _period(month: int) -> Period:
    end = {8: 31, 9: 30, 10: 31}[month]
    return Period.from_dict(
        {"start": f"2026-{month:02d}-01", "end": f"2026-{month:02d}-{end}", "timezone": "UTC"}
    )


@pytest.fixture
def carry_on(functions, monkeypatch):
    """The operator's CARRY_BELOW_MINIMUM=true, in the worker that issues the invoices."""
    invoicing = functions["worker"].container.invoicing
    monkeypatch.setattr(
        invoicing, "settings", dataclasses.replace(invoicing.settings, carry_below_minimum=True)
    )


def _queue(functions, account: AccountItem, month: int, *, copies: int = 1) -> Job:
    """A run of its own for this one account (no other account is billed), its job queued ``copies`` times."""
    container = functions["worker"].container
    run_id = f"carry-{uuid.uuid4().hex[:8]}"
    period = _period(month)
    container.billing.start_run(run_id, trigger="test", period=period.as_dict(), now=container.clock.now())
    job = Job(run_id, account.client_id, account.email, account.solus_user_id, period)
    container.queue.send_all([job.message()] * copies)
    container.billing.finish_queuing(run_id, copies, container.clock.now())
    return job


def _item(account: AccountItem, month: int) -> InvoiceItem:
    return InvoiceItem.get(f"{account.client_id}#2026-{month:02d}", consistent_read=True)


def _doc(item: InvoiceItem) -> dict:
    return json.loads(item.document)


# 40 minutes of a server at the end of August: 0.01 USD; September in full: a few dollars
TINY_THEN_FULL = [{"plan_id": 1, "created_at": "2026-08-31T23:20:00+00:00", "name": "tiny"}]
# 40 minutes in August and 40 in September: 0.01 USD each month; nothing in October
TINY_TWICE = [
    {
        "plan_id": 1,
        "created_at": "2026-08-31T23:20:00+00:00",
        "deleted_at": "2026-09-01T00:00:00+00:00",
        "name": "tiny-august",
    },
    {
        "plan_id": 1,
        "created_at": "2026-09-30T23:20:00+00:00",
        "deleted_at": "2026-10-01T00:00:00+00:00",
        "name": "tiny-september",
    },
]


def test_a_total_below_the_minimum_is_carried_into_the_next_invoice_once_and_charged_there(
    stack, functions, worker, carry_on, browser
):
    # Given a client with a card on file whose August comes to 0.01 USD (Stripe's minimum is 0.50)
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=TINY_THEN_FULL, enrolled_at=AUGUST_2026)
    customer = card_on_file(stack, container, account)
    # When August is invoiced by a job delivered twice
    _queue(functions, account, 8, copies=2)
    drain(worker)
    # Then the August invoice is issued carried: nothing is sent to Stripe, and it is not payable
    august = _item(account, 8)
    assert (_doc(august)["total"], august.status, august.carried_to) == ("0.01", "carried", None)
    assert container.payments.charge_of(august.number) is None
    assert intents_of(stack, customer) == []
    # and its email says it is carried to the next invoice, with no Pay now
    [mail] = invoice_mails(stack, account.email)
    assert "carried to your next invoice" in mail.html and "Pay now" not in mail.html
    # and it is never overdue: the overdue rule reads unpaid invoices only
    assert august.number not in [
        i.number for i in container.billing.unpaid_due_before(datetime(2099, 1, 1).date())
    ]

    # and the operator finds it among the balances waiting
    waiting = invoke(functions, {"listInvoices": {"status": "carried"}})["invoices"]
    assert august.number in [r["number"] for r in waiting]

    # When September is invoiced: its job twice in one batch, an overlapping run, and a redelivery after
    job = _queue(functions, account, 9, copies=2)
    _queue(functions, account, 9)
    drain(worker)
    assert functions["worker"].container.invoicing.process(job, final_attempt=False) == "invoiced"
    # Then one September invoice carries "Balance carried from <August>" with August's exact total, after tax
    september = _item(account, 9)
    assert [i.number for i in invoices_of(account.client_id)].count(september.number) == 1
    assert len(invoices_of(account.client_id)) == 2
    doc = _doc(september)
    assert doc["carried_in"] == [{"number": august.number, "amount": "0.01"}]
    lines = sum(Decimal(ln["amount"]) for ln in doc["lines"])
    assert Decimal(doc["total"]) == lines + Decimal(doc["tax"]) + Decimal("0.01")
    # and August names September: taken once, and no longer among the balances waiting
    august = _item(account, 8)
    assert (august.status, august.carried_to) == ("carried", september.number)
    waiting = invoke(functions, {"listInvoices": {"status": "carried"}})["invoices"]
    assert august.number not in [r["number"] for r in waiting]
    # and September was charged once, for its whole total, August's 0.01 included
    [intent] = intents_of(stack, customer)
    assert (
        intent.amount == int(Decimal(doc["total"]) * 100) and intent.metadata["invoice"] == september.number
    )
    assert _item(account, 9).status == "paid"

    # And both show it: the operator's rows …
    rows = {
        r["number"]: r for r in invoke(functions, {"listInvoices": {"client": account.client_id}})["invoices"]
    }
    assert rows[august.number]["status"] == "carried" and rows[august.number]["carriedTo"] == september.number
    assert rows[september.number]["carriedFrom"] == [{"invoice": august.number, "amount": "0.01"}]
    # … and the client's pages
    logged_in(browser, account.email)
    page = browser.get(f"/invoices/{august.number}")
    assert page.has(f'Carried to <a href="/invoices/{september.number}">{september.number}</a>')
    assert not page.has("Pay now")
    page = browser.get(f"/invoices/{september.number}")
    assert page.has(f'Balance carried from <a href="/invoices/{august.number}">{august.number}</a>')
    assert browser.get("/invoices").has(f"(to {september.number})")


def test_a_next_invoice_still_below_the_minimum_carries_again_and_a_void_releases_once(
    stack, functions, worker, carry_on
):
    # Given August and September of 0.01 USD each, invoiced in turn
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=TINY_TWICE, enrolled_at=AUGUST_2026)
    card_on_file(stack, container, account)
    _queue(functions, account, 8)
    drain(worker)
    _queue(functions, account, 9)
    drain(worker)
    # Then September (0.01 + August's 0.01 = 0.02) is still below the minimum: carried again, the total grows
    august, september = _item(account, 8), _item(account, 9)
    assert (august.status, august.carried_to) == ("carried", september.number)
    assert (_doc(september)["total"], september.status, september.carried_to) == ("0.02", "carried", None)
    assert container.payments.charge_of(september.number) is None
    # and August, taken by September, can be neither paid nor voided (its total is billed on September)
    for payload in (
        {"markPaid": august.number, "reference": "bank 1"},
        {"voidInvoice": august.number, "reason": "x"},
    ):
        with pytest.raises(PayloadError, match=f"carried to {september.number}"):
            invoke(functions, payload)
    # When the operator voids September
    note = invoke(functions, {"voidInvoice": september.number, "reason": "wrong price"})["creditNote"]
    # Then the credit note cancels September's whole total and August is carried again (open), once
    assert note["total"] == "-0.02"
    assert (_item(account, 8).status, _item(account, 8).carried_to) == ("carried", None)
    assert _item(account, 8).due_on == _doc(_item(account, 8))["due_on"]  # back among the balances waiting
    with pytest.raises(PayloadError, match="void already"):
        invoke(functions, {"voidInvoice": september.number, "reason": "again"})
    # When September is billed again (twice: a duplicate re-bill)
    rebill = {"rebill": {"client": account.client_id, "period": "2026-09"}}
    invoke(functions, rebill)
    invoke(functions, rebill)
    drain(worker)
    # Then the new September takes August once more, and only once
    again = _item(account, 9)
    assert again.number != september.number
    assert _doc(again)["carried_in"] == [{"number": august.number, "amount": "0.01"}]
    assert _item(account, 8).carried_to == again.number
    # When the client pays the open carried September by transfer, the operator records it as today
    paid = invoke(functions, {"markPaid": again.number, "reference": "bank transfer 7"})
    assert paid["status"] == "paid"
    # and October, with nothing to bill, leaves nothing carried behind
    _queue(functions, account, 10)
    drain(worker)
    assert [i.number for i in invoices_of(account.client_id)].count(again.number) == 1
    assert _item(account, 10).outcome == "nothing_to_bill"


def test_two_invoices_that_read_the_same_carried_balance_take_it_once(
    stack, functions, worker, carry_on, monkeypatch
):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from postpay.adapters.billing_store import BillingStore

    # Given August carried (0.01 USD), and September and October to bill
    account = enrolled_account(stack, functions, servers=TINY_THEN_FULL, enrolled_at=AUGUST_2026)
    _queue(functions, account, 8)
    drain(worker)
    assert _item(account, 8).status == "carried"
    # When September's and October's jobs both read the open balance before either writes (overlapping
    # runs: the index read is no lock)
    both_read = Barrier(2, timeout=30)
    read = BillingStore._carried_into

    def read_then_wait(self, entries, chosen):
        found = read(self, entries, chosen)
        both_read.wait()
        return found

    monkeypatch.setattr(BillingStore, "_carried_into", read_then_wait)
    invoicing = functions["worker"].container.invoicing
    jobs = [_queue(functions, account, month) for month in (9, 10)]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda job: invoicing.process(job, final_attempt=False), jobs))
    # Then both are invoiced, and exactly one of them carries August's 0.01: the other's transaction found
    # it taken and was issued without it
    assert outcomes == ["invoiced", "invoiced"]
    carried = {m: _doc(_item(account, m)).get("carried_in", []) for m in (9, 10)}
    assert sorted(len(c) for c in carried.values()) == [0, 1], carried
    [taker] = [m for m, c in carried.items() if c]
    assert carried[taker] == [{"number": _item(account, 8).number, "amount": "0.01"}]
    assert _item(account, 8).carried_to == _item(account, taker).number


def _august_carried_then_a_september_run(stack, functions, worker) -> tuple[list[AccountItem], list[Job]]:
    """Two clients whose August (0.01 USD each) was carried, and one September run of both: its jobs, not
    queued, for the worker's own container to issue one after another."""
    accounts = [
        enrolled_account(stack, functions, servers=TINY_THEN_FULL, enrolled_at=AUGUST_2026) for _ in range(2)
    ]
    for account in accounts:
        _queue(functions, account, 8)
    drain(worker)
    assert [_item(a, 8).status for a in accounts] == ["carried", "carried"]
    container = functions["worker"].container
    run_id = f"carry-{uuid.uuid4().hex[:8]}"
    period = _period(9)
    container.billing.start_run(run_id, trigger="test", period=period.as_dict(), now=container.clock.now())
    return accounts, [Job(run_id, a.client_id, a.email, a.solus_user_id, period) for a in accounts]


def test_a_runs_batches_in_one_environment_read_the_open_balances_once(
    stack, functions, worker, carry_on, monkeypatch
):
    # Given two clients whose August (0.01 USD each) was carried, and one September run of both, its two jobs
    # taken by one worker in two batches
    accounts, jobs = _august_carried_then_a_september_run(stack, functions, worker)
    container = functions["worker"].container
    reads: list[str] = []
    query = InvoiceItem.by_status.query
    monkeypatch.setattr(
        InvoiceItem.by_status, "query", lambda status, **kw: reads.append(status) or query(status, **kw)
    )
    # When the worker issues them one batch after the other
    outcomes = [container.invoicing.process(job, final_attempt=False) for job in jobs]
    # Then the open balances were read once for the run, and each September took its own August
    assert outcomes == ["invoiced", "invoiced"]
    assert reads == ["carried"]
    for account in accounts:
        september = _item(account, 9)
        assert _doc(september)["carried_in"] == [{"number": _item(account, 8).number, "amount": "0.01"}]
        assert _item(account, 8).carried_to == september.number
    # and the next run reads them again
    _queue(functions, accounts[0], 10)
    drain(worker)
    assert _item(accounts[0], 10).outcome == "invoiced"
    assert reads == ["carried", "carried"]


def test_a_balance_read_for_the_run_and_billed_again_since_is_left_for_the_next_invoice(
    stack, functions, worker, carry_on, monkeypatch
):
    # Given two clients whose August (0.01 USD each) was carried, and a September run whose first batch here
    # read the open balances
    accounts, (first, second) = _august_carried_then_a_september_run(stack, functions, worker)
    container = functions["worker"].container
    run_id = first.run_id
    assert container.invoicing.process(first, final_attempt=False) == "invoiced"
    # and the second client's August as read then no longer there under that number (voided and billed
    # again meanwhile, elsewhere: another number under the same key)
    cached_run, balances = container.billing._carried_of_run
    assert cached_run == run_id
    august = _item(accounts[1], 8)
    stale = InvoiceItem(**{**august.attribute_values, "number": "INV-STALE"})
    container.billing._carried_of_run = (run_id, {**balances, august.account_period: stale})
    # When the second job is issued
    assert container.invoicing.process(second, final_attempt=False) == "invoiced"
    # Then its September is issued without that balance (it waits for the next invoice, not taken), and the
    # run's next batch here reads the balances again
    assert not _doc(_item(accounts[1], 9)).get("carried_in")
    assert _item(accounts[1], 8).carried_to is None and _item(accounts[1], 8).status == "carried"
    assert container.billing._carried_of_run is None
