"""Exactly once under faults: duplicate delivery, a worker killed between any two steps, overlapping runs."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from local.poller import sqs_event
from postpay.adapters.tables import OutcomeItem, RunItem
from postpay.billing.invoicing import EMAIL_LEASE
from tests import workers
from tests.integration.billing_helpers import (
    ShiftedClock,
    all_invoice_numbers,
    counter,
    drain,
    enrolled_account,
    invoice_mails,
    invoices_of,
    invoke,
    receive_all,
)
from tests.integration.test_invoicing import OCTOBER_SERVERS


class Killed(Exception):
    """The worker died here."""


def kill_once(
    target: object, name: str, monkeypatch: pytest.MonkeyPatch, *, after: bool = False
) -> list[int]:
    """Makes ``target.name`` die on its first call (before, or after doing its work)."""
    original = getattr(target, name)
    calls: list[int] = []

    def dying(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            if after:
                original(*args, **kwargs)
            raise Killed(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)
    return calls


def settle_month(functions, worker, invoicing_date: str) -> None:
    """Bills the month for every account the shared stack holds so far, by a run of its own (the 15th: not
    the test's run, which it would otherwise join). Each fault test has a month of its own, so another test's
    half-finished month (an email whose lease still lives) cannot hold up its drain or its counts, and its
    run then finds every other account settled, as the old shared October did."""
    invoke(functions, {"invoicingDate": invoicing_date[:8] + "15"})
    drain(worker)


def _invoicing(functions):
    return functions["worker"].container.invoicing


@pytest.mark.parametrize(
    ("where", "target", "name", "after", "lease_passes", "invoicing_date"),
    [
        (
            "after reading usage, before writing the invoice",
            "billing",
            "issue_batch",
            False,
            False,
            "2024-02-01",
        ),
        ("after writing the invoice, before the email", "mailer", "deliver", False, True, "2024-03-01"),
        ("after writing the nothing-to-bill record", "billing", "issue_batch", True, False, "2024-04-01"),
    ],
)
def test_worker_killed_between_steps_still_ends_with_one_invoice_and_one_email(
    stack, functions, worker, monkeypatch, where, target, name, after, lease_passes, invoicing_date
):
    # Given an account with usage (or none, for the nothing-to-bill case) and a worker that dies once
    settle_month(functions, worker, invoicing_date)
    servers = [] if "nothing-to-bill" in where else OCTOBER_SERVERS
    account = enrolled_account(stack, functions, servers=servers)
    invoicing = _invoicing(functions)
    calls = kill_once(getattr(invoicing, target), name, monkeypatch, after=after)
    numbers_before = counter()
    # When the run is processed; the queue redelivers the failed job (after the email lease if it applies)
    run = invoke(functions, {"invoicingDate": invoicing_date})
    for _ in range(30):  # until the worker dies (the batches before this account's finish first)
        if calls:
            break
        if worker.poll_once() == 0:
            time.sleep(0.5)
    if lease_passes:
        # the lease the dead attempt wrote has expired by the time the queue redelivers its job (moved before
        # the redeliveries: retried within the lease, the job would reach the dead-letter queue first)
        monkeypatch.setattr(invoicing, "clock", ShiftedClock(EMAIL_LEASE + timedelta(minutes=1)))
    drain(worker)
    # Then
    assert calls, f"the fault {where} was injected"
    if servers:
        assert len(invoices_of(account.client_id)) == 1, where
        assert len(invoice_mails(stack, account.email)) == 1, where
        assert OutcomeItem.get(run["runId"], account.client_id).outcome == "invoiced"
    else:
        assert OutcomeItem.get(run["runId"], account.client_id).outcome == "nothing_to_bill"
    # (the run's counts also hold the shared stack's other accounts, some left broken by other tests: only
    # this account's outcome and the numbers are this test's to check)
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert all_invoice_numbers() == list(range(1, counter() + 1)), "numbers stay gapless"
    assert counter() - numbers_before <= summary["queued"]


def test_killed_after_sending_the_email_does_not_resend_it_while_its_lease_lives(
    stack, functions, worker, monkeypatch
):
    """The one window SES leaves open: accepted by SES, killed before the "sent" mark. The job keeps retrying
    and sends nothing while the 20-minute lease lives (longer than any live attempt); only a job still
    unconfirmed after it would send again: at least once, never silently lost (README, Invoicing)."""
    settle_month(functions, worker, "2024-06-01")  # its email stays leased: a month of its own
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    calls = kill_once(_invoicing(functions).billing, "mark_emailed", monkeypatch)
    run = invoke(functions, {"invoicingDate": "2024-06-01"})
    drain(worker)
    assert calls
    assert len(invoices_of(account.client_id)) == 1
    assert len(invoice_mails(stack, account.email)) == 1
    assert OutcomeItem.get(run["runId"], account.client_id).outcome == "invoiced"


def test_the_same_job_delivered_twice_at_once_bills_once(stack, functions, lambda_pool):
    # Given an account, and its job delivered twice, to two execution environments at the same time
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    messages = [m for m in receive_all(stack) if json.loads(m["Body"])["runId"] == run["runId"]]
    assert messages
    event = sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:postpay-local-invoice-jobs")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: lambda_pool.submit(workers.invoke_worker, event).result(), range(2)))
    # Then one invoice, one email, and the run counted the account once
    assert len(invoices_of(account.client_id)) == 1
    assert len(invoice_mails(stack, account.email)) == 1
    record = RunItem.get(run["runId"])
    assert record.invoiced + record.already_invoiced + record.nothing_to_bill + record.failed == record.queued


def test_overlapping_runs_in_parallel_workers_issue_one_gapless_invoice_per_account(
    stack, functions, worker, lambda_pool
):
    # Given several accounts and two runs of the same month queued at once (schedule and operator)
    settle_month(functions, worker, "2024-05-01")
    accounts = [enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1]) for _ in range(6)]
    first = invoke(functions, {"invoicingDate": "2024-05-01"})
    second = invoke(functions, {"invoicingDate": "2024-05-02"})
    messages = [
        m for m in receive_all(stack) if json.loads(m["Body"])["runId"] in (first["runId"], second["runId"])
    ]
    # When four environments process them concurrently, in small batches
    arn = "arn:aws:sqs:us-east-1:123456789012:postpay-local-invoice-jobs"
    groups = [messages[i : i + 3] for i in range(0, len(messages), 3)]
    results = list(lambda_pool.map(workers.invoke_worker, [sqs_event(group, arn) for group in groups]))
    # (and SQS delivers again what a worker handed back: a job its time budget did not reach on a loaded
    # machine, or a whole failed invocation)
    for _ in range(4):
        again = [m for group, result in zip(groups, results, strict=True) for m in handed_back(group, result)]
        if not again:
            break
        groups = [again]
        results = [workers.invoke_worker(sqs_event(again, arn))]
    else:
        raise AssertionError(f"jobs still handed back after four redeliveries: {results}")
    # Then every account has exactly one invoice and one email; numbers have no gap and no repeat
    for account in accounts:
        assert len(invoices_of(account.client_id)) == 1
        assert len(invoice_mails(stack, account.email)) == 1
    assert all_invoice_numbers() == list(range(1, counter() + 1))
    for run in (first, second):  # each run recorded an outcome for each of them, billed or already billed
        outcomes = {OutcomeItem.get(run["runId"], account.client_id).outcome for account in accounts}
        assert outcomes <= {"invoiced", "already_invoiced"}, outcomes


def test_duplicate_scheduled_events_make_one_run(stack, functions, worker, monkeypatch):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "time": "2022-11-01T00:05:00Z"}
    first = invoke(functions, event)
    second = invoke(functions, event)
    assert first["run"]["runId"] == second["run"]["runId"] == "scheduled-2022-10"
    drain(worker)
    assert len(invoices_of(account.client_id)) == 1
    assert len(invoice_mails(stack, account.email)) == 1


def handed_back(messages: list[dict], result: dict) -> list[dict]:
    """The messages a worker's answer leaves on the queue: its batch item failures, or all after a crash."""
    if "failed" in result:
        return messages
    failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
    return [m for m in messages if m["MessageId"] in failed]
