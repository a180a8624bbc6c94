"""A usage answer that is not the answer to the question fails its client at once; the operator's re-bill."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from local.poller import sqs_event
from postpay.adapters.tables import InvoiceItem, OutcomeItem, RunItem
from postpay.billing.commands import PayloadError
from postpay.billing.invoicing import EMAIL_LEASE
from tests import workers
from tests.integration.billing_helpers import (
    all_invoice_numbers,
    counter,
    drain,
    enrolled_account,
    invoice_mails,
    invoices_of,
    invoke,
    receive_all,
    seed_servers,
)
from tests.integration.conftest import fault
from tests.integration.test_invoicing import OCTOBER_SERVERS

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:postpay-local-invoice-jobs"

# What a proxy, a cache or a SolusVM bug could answer, and the reason the run records for it. OCTOBER_SERVERS
# use 8192 tokens in October (5000 + 3192); the first server listed is web-1 (5000 tokens).
WRONG_ANSWERS: list[tuple[str, dict[str, Any], str]] = [
    (
        "another user",
        {"change": {"user_id": 999_999}},
        "usage user_id: expected {user} (what was asked), got 999999",
    ),
    (
        "another period",
        {"change": {"date_from": "2022-09-01", "date_to": "2022-09-30"}},
        "usage date_from: expected '2022-10-01' (what was asked), got '2022-09-01'",
    ),
    (
        "a total that is not the sum",
        {"change": {"total_tokens": 8193}},
        "usage total_tokens: expected 8192 (the sum of the servers' tokens), got 8193",
    ),
    (
        "a total given as text",
        {"change": {"total_tokens": "8192"}},
        "usage total_tokens: expected 8192 (the sum of the servers' tokens), got '8192'",
    ),
    (
        "no total",
        {"remove": ["total_tokens"]},
        "usage total_tokens: expected 8192 (the sum of the servers' tokens), "
        "got nothing (the field is absent)",
    ),
    (
        "the same server twice",
        {"duplicate": True},
        "usage servers[2].id: expected server ids that appear once, got {server} a second time",
    ),
    (
        "negative tokens",
        {"server": {"tokens": -5}},
        "usage servers[0].tokens (server {server}): expected a non-negative integer up to 2**63 - 1, got -5",
    ),
    (
        "float tokens",
        {"server": {"tokens": 5000.0}},
        "usage servers[0].tokens (server {server}): expected a non-negative integer up to 2**63 - 1, "
        "got 5000.0",
    ),
    (
        "a token count beyond 64 bits",
        {"server": {"tokens": 10**30}, "change": {"total_tokens": 10**30 + 3192}},
        "usage servers[0].tokens (server {server}): expected a non-negative integer up to 2**63 - 1, "
        f"got {10**30}",
    ),
]


def usage_requests(stack, user_id: int) -> int:
    log = requests.get(f"{stack.emulator.root}/_emulator/state", timeout=5).json()["requests"]
    return sum(1 for r in log if r["path"].endswith(f"/users/{user_id}/usage"))


def first_server_id(stack, user_id: int) -> int:
    state = requests.get(f"{stack.emulator.root}/_emulator/state", timeout=5).json()
    return min(s["id"] for s in state["servers"] if s["user_id"] == user_id)


def test_wrong_usage_answers_fail_their_clients_at_once_beside_invoiced_ones(stack, functions, worker):
    # Given two accounts SolusVM answers right, and one per kind of wrong answer
    good = [enrolled_account(stack, functions, servers=OCTOBER_SERVERS) for _ in range(2)]
    wrong = {}
    for name, change, reason in WRONG_ANSWERS:
        account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
        fault(stack, mode="usage", path=f"users/{account.solus_user_id}/usage", **change)
        server = first_server_id(stack, account.solus_user_id)
        wrong[account.client_id] = (name, account, reason.format(user=account.solus_user_id, server=server))
    # When October is invoiced
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker, rounds=80)
    # Then the good accounts are invoiced and the run goes on to its end
    for account in good:
        assert len(invoices_of(account.client_id)) == 1
        assert len(invoice_mails(stack, account.email)) == 1
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert summary["finished"], summary
    assert summary["failed"] == len(summary["failures"]) and set(summary["failures"]) >= {
        str(c) for c in wrong
    }
    # and each wrong answer failed its client, asked once, with a reason naming the field and both values
    for client_id, (name, account, reason) in wrong.items():
        assert summary["failures"][str(client_id)] == f"UsageMismatch: {reason}", name
        assert OutcomeItem.get(run["runId"], client_id).outcome == "failed", name
        assert usage_requests(stack, account.solus_user_id) == 1, f"{name}: not retried"
        with pytest.raises(InvoiceItem.DoesNotExist):  # no invoice, no nothing-to-bill record
            InvoiceItem.get(f"{client_id}#2022-10")
        assert invoice_mails(stack, account.email) == [], name
    # And the dry run shows the same refusals, per client, with the same reasons
    # (its jobs go through the workers; its report is read page by page)
    dry = invoke(functions, {"invoicingDate": "2022-11-01", "dryRun": True})
    drain(worker, rounds=80)
    entries = dry_run_report(functions, dry["runId"])
    for client_id, (_, _, reason) in wrong.items():
        assert entries[client_id]["outcome"] == "failed" and "lines" not in entries[client_id]
        assert (
            entries[client_id]["reason"] == summary["failures"][str(client_id)] == f"UsageMismatch: {reason}"
        )
    for account in good:
        assert entries[account.client_id]["outcome"] == "already_invoiced"
    # When SolusVM answers right again, the operator re-bills one refused client: it is invoiced once
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)
    fixed = next(iter(wrong))
    rebill = invoke(functions, {"rebill": {"client": fixed, "period": "2022-10"}})
    assert rebill["runId"].startswith(f"rebill-2022-10-{fixed}-") and rebill["queued"] == 1
    drain(worker)
    [item] = invoices_of(fixed)
    assert json.loads(item.document)["total"] == "8.19"
    assert invoke(functions, {"runStatus": rebill["runId"]})["invoiced"] == 1


def test_a_nothing_to_bill_period_is_rebilled_exactly_once_under_duplicates(
    stack, functions, worker, lambda_pool
):
    # Given a client whose October was recorded as nothing to bill
    account = enrolled_account(stack, functions, servers=[])
    first = invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    assert OutcomeItem.get(first["runId"], account.client_id).outcome == "nothing_to_bill"
    # and SolusVM reports October usage after all
    seed_servers(stack, account.solus_user_id, OCTOBER_SERVERS)
    # When the month is run again normally, it still says nothing to bill and bills nothing
    again = invoke(functions, {"invoicingDate": "2022-11-02"})
    drain(worker)
    assert OutcomeItem.get(again["runId"], account.client_id).outcome == "nothing_to_bill"
    assert invoices_of(account.client_id) == []
    numbers_before = counter()
    # When the operator re-bills it twice at once, and each job is delivered twice to concurrent workers
    payload = {"rebill": {"client": account.client_id, "period": "2022-10"}}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(
            pool.map(lambda _: lambda_pool.submit(workers.invoke, "automation", payload).result(), range(2))
        )
    run_ids = {run["runId"] for run in runs}
    assert len(run_ids) == 2
    messages = [m for m in receive_all(stack) if json.loads(m["Body"])["runId"] in run_ids]
    assert len(messages) == 2 and all(json.loads(m["Body"])["rebill"] is True for m in messages)
    events = [sqs_event([m], QUEUE_ARN) for m in messages * 2]
    list(lambda_pool.map(workers.invoke_worker, events))
    # Then one invoice with a new number, one email, and each run counted the client once
    [item] = invoices_of(account.client_id)
    doc = json.loads(item.document)
    assert doc["total"] == "8.19" and doc["run_id"] in run_ids
    assert counter() == numbers_before + 1 and all_invoice_numbers() == list(range(1, counter() + 1))
    assert len(invoice_mails(stack, account.email)) == 1
    outcomes = sorted(OutcomeItem.get(run_id, account.client_id).outcome for run_id in run_ids)
    assert outcomes == ["already_invoiced", "invoiced"]
    # And a third re-bill is refused, naming the invoice; a normal re-run says already invoiced
    runs_before = RunItem.count()
    with pytest.raises(PayloadError, match=f"already has invoice {doc['number']} for October 2022"):
        invoke(functions, payload)
    assert RunItem.count() == runs_before
    last = invoke(functions, {"invoicingDate": "2022-11-03"})
    drain(worker)
    assert OutcomeItem.get(last["runId"], account.client_id).outcome == "already_invoiced"
    assert len(invoices_of(account.client_id)) == 1 and len(invoice_mails(stack, account.email)) == 1


def test_a_rebill_that_still_finds_no_usage_bills_nothing(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=[])
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    rebill = invoke(functions, {"rebill": {"client": account.client_id, "period": "2022-10"}})
    drain(worker)
    assert OutcomeItem.get(rebill["runId"], account.client_id).outcome == "nothing_to_bill"
    assert InvoiceItem.get(f"{account.client_id}#2022-10").outcome == "nothing_to_bill"
    assert invoices_of(account.client_id) == []


def test_rebills_are_refused_with_a_reason_and_change_nothing(stack, functions, worker):
    from datetime import UTC, datetime

    invoiced = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    late = enrolled_account(
        stack, functions, servers=OCTOBER_SERVERS, enrolled_at=datetime(2022, 11, 2, tzinfo=UTC)
    )
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [item] = invoices_of(invoiced.client_id)
    cases = [
        ({"client": 987_654_321, "period": "2022-10"}, "rebill refused: no enrolled client 987654321"),
        (
            {"client": invoiced.client_id, "period": "2022-10"},
            f"already has invoice {item.number} for October 2022",
        ),
        ({"client": late.client_id, "period": "2022-10"}, "was enrolled after October 2022 ended"),
        ({"client": invoiced.client_id, "period": "2099-10"}, "October 2099 has not ended yet"),
    ]
    runs_before, numbers_before = RunItem.count(), counter()
    for body, message in cases:
        with pytest.raises(PayloadError) as error:
            invoke(functions, {"rebill": body})
        assert message in str(error.value)
    assert RunItem.count() == runs_before and counter() == numbers_before


def test_a_redelivered_job_whose_invoice_exists_still_sends_its_email_when_the_answer_turns_wrong(
    stack, functions, worker, monkeypatch
):
    """The invoice was computed from a checked answer; the worker died before the email. If SolusVM answers
    wrong when the job comes back, the invoice stands and its email must still go out exactly once."""
    from datetime import timedelta

    from tests.integration.billing_helpers import ShiftedClock
    from tests.integration.test_invoicing_faults import Killed

    # Given an invoice written by a worker that died before sending its email (this client's: the run
    # queues a job for every account the session enrolled, in any order)
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    invoicing = functions["worker"].container.invoicing
    deliver, calls = invoicing.mailer.deliver, []

    def dying(message: Any) -> object:
        if message.request["Destination"]["ToAddresses"] == [account.email] and not calls:
            calls.append(1)
            raise Killed("send")
        return deliver(message)

    monkeypatch.setattr(invoicing.mailer, "deliver", dying)
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    # (the run holds every earlier test's accounts too: poll batch by batch until this client's job has died
    # once, and no further, so its job does not come back while the email lease lives)
    for _ in range(60):
        if calls:
            break
        worker.poll_once()
    assert calls and len(invoices_of(account.client_id)) == 1
    assert invoice_mails(stack, account.email) == []
    # When SolusVM now answers for another user, and the job comes back after the email lease
    fault(stack, mode="usage", path=f"users/{account.solus_user_id}/usage", change={"user_id": 999_999})
    monkeypatch.setattr(invoicing, "clock", ShiftedClock(EMAIL_LEASE + timedelta(minutes=1)))
    drain(worker)
    # Then the invoice's email went out once, and the run counts the client as invoiced, not failed
    assert len(invoices_of(account.client_id)) == 1
    assert len(invoice_mails(stack, account.email)) == 1
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert summary["invoiced"] == 1 and summary["failed"] == 0, summary


def test_running_a_settled_month_again_says_already_invoiced_or_nothing_to_bill_whatever_solusvm_answers(
    stack, functions, worker
):
    # Given an invoiced client and a nothing-to-bill client for October
    invoiced = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    nothing = enrolled_account(stack, functions, servers=[])
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    # When SolusVM now answers both wrong and the month is run again
    for account in (invoiced, nothing):
        fault(stack, mode="usage", path=f"users/{account.solus_user_id}/usage", change={"user_id": 999_999})
    again = invoke(functions, {"invoicingDate": "2022-11-02"})
    drain(worker)
    # Then the re-run reports them as any re-run does (the answer computes nothing for a settled month)
    summary = invoke(functions, {"runStatus": again["runId"]})
    assert summary["failed"] == 0 and summary["failures"] == {}, summary
    assert OutcomeItem.get(again["runId"], invoiced.client_id).outcome == "already_invoiced"
    assert OutcomeItem.get(again["runId"], nothing.client_id).outcome == "nothing_to_bill"
    assert len(invoices_of(invoiced.client_id)) == 1 and len(invoice_mails(stack, invoiced.email)) == 1
    # But a re-bill of the nothing-to-bill month on a refused answer fails, naming the field
    rebill = invoke(functions, {"rebill": {"client": nothing.client_id, "period": "2022-10"}})
    drain(worker)
    failures = invoke(functions, {"runStatus": rebill["runId"]})["failures"]
    assert failures == {
        str(nothing.client_id): f"UsageMismatch: usage user_id: expected {nothing.solus_user_id} "
        "(what was asked), got 999999"
    }
    assert InvoiceItem.get(f"{nothing.client_id}#2022-10").outcome == "nothing_to_bill"


def dry_run_report(functions, run_id: str) -> dict[int, dict]:
    """Every account of a run's report, by client id, read page by page as an operator would."""
    entries: dict[int, dict] = {}
    page = invoke(functions, {"runStatus": run_id})
    while True:
        entries.update({a["clientId"]: a for a in page["accounts"]})
        if page["next"] is None:
            return entries
        page = invoke(functions, {"runStatus": run_id, "after": page["next"]})
