"""A worker's batch: usage asked in parallel, every invoice of the batch in one transaction, and what a
cancelled transaction costs (one more attempt per batch, not per invoice)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local.events import LambdaContext
from local.poller import sqs_event
from postpay import limits
from postpay.adapters import tables
from postpay.adapters.billing_store import BillingStore
from postpay.adapters.tables import OutcomeItem, RunItem
from postpay.limits import WORKER_TIMEOUT_SECONDS
from tests.integration.billing_helpers import (
    all_invoice_numbers,
    counter,
    enrolled_account,
    invoice_mails,
    invoices_of,
    invoke,
    receive_all,
)
from tests.integration.test_invoicing import OCTOBER_SERVERS

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:postpay-local-invoice-jobs"
# These accounts are enrolled after October 2022 and invoiced for December, so the other tests' October runs
# (which drain the queue a bounded number of times) never see them.
ENROLLED = datetime(2022, 11, 15, tzinfo=UTC)
DECEMBER = {"invoicingDate": "2023-01-01"}


class Transactions:
    """Counts the TransactWriteItems requests the worker sends, and which of them were cancelled."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = 0
        self.cancelled = 0
        connection = tables.connection()
        original = connection.transact_write_items

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            try:
                return original(*args, **kwargs)
            except Exception:
                self.cancelled += 1
                raise

        monkeypatch.setattr(connection, "transact_write_items", counted)


def queued_batch(stack, functions, accounts: int, *, servers=OCTOBER_SERVERS[:1]) -> tuple[dict, list, list]:
    """``accounts`` enrolled accounts and a run of October for them, its jobs taken off the queue."""
    made = [
        enrolled_account(stack, functions, servers=servers, enrolled_at=ENROLLED) for _ in range(accounts)
    ]
    run = invoke(functions, DECEMBER)
    messages = [m for m in receive_all(stack) if json.loads(m["Body"])["runId"] == run["runId"]]
    mine = {a.client_id for a in made}
    # the run's jobs for the shared stack's other accounts are this test's litter: left on the queue, every
    # later test's drain would work through them (the other runs' jobs go back after their 60 s)
    forget([m for m in messages if json.loads(m["Body"])["clientId"] not in mine])
    return run, made, [m for m in messages if json.loads(m["Body"])["clientId"] in mine]


def run_worker(functions, messages: list[dict], *, timeout_ms: int = WORKER_TIMEOUT_SECONDS * 1000) -> dict:
    event = sqs_event(messages, QUEUE_ARN)
    context = LambdaContext(function_name="worker", timeout_ms=timeout_ms)
    return functions["worker"].handler(event, context)


def forget(messages: list[dict]) -> None:
    """Deletes jobs a test took off the queue and left unfinished on purpose (an email leased for 20 minutes):
    back on the queue, they would fail every later test's drain until their attempts are used."""
    import os

    import boto3

    sqs = boto3.client("sqs")
    for start in range(0, len(messages), 10):
        sqs.delete_message_batch(
            QueueUrl=os.environ["INVOICE_QUEUE_URL"],
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages[start : start + 10])
            ],
        )


def counter_moved_after_the_read(monkeypatch, invoicing, by: int) -> None:
    """Another worker issues ``by`` invoices between the batch's read of its buyers (and the counter) and its
    transaction: the counter the batch read is stale by then."""
    read_both = invoicing.buyers_with_cards

    def read_then_moved(emails: list[str], clients: list[int]) -> Any:
        found = read_both(emails, clients)
        BillingStore._counter_hint = max(0, counter() - by)
        return found

    monkeypatch.setattr(invoicing, "buyers_with_cards", read_then_moved)


def delivered(message: dict, times: int) -> dict:
    """The message as SQS hands it over on its ``times``-th delivery."""
    return {**message, "Attributes": {**message.get("Attributes", {}), "ApproximateReceiveCount": str(times)}}


def number_of(account) -> int:
    [item] = invoices_of(account.client_id)
    return int(re.sub(r"\D", "", item.number))


def test_a_batch_of_ten_is_issued_in_one_transaction_with_consecutive_numbers(stack, functions, monkeypatch):
    # Given ten accounts with usage, their jobs in one batch, and a worker that knows the counter
    run, accounts, messages = queued_batch(stack, functions, 10)
    assert len(messages) == 10
    BillingStore().counter_value()
    transactions = Transactions(monkeypatch)
    invoicing = functions["worker"].container.invoicing
    assert invoicing.buyers_with_cards is not None, "the stack configures card payments"
    buyer_reads: list[int] = []
    read_both = invoicing.buyers_with_cards
    monkeypatch.setattr(
        invoicing,
        "buyers_with_cards",
        lambda emails, clients: buyer_reads.append(len(emails)) or read_both(emails, clients),
    )
    # When the worker takes the batch (more than the deployed eight), with the time ten worst-case jobs need
    parallelism = functions["worker"].container.settings.usage_parallelism
    result = run_worker(
        functions,
        messages,
        timeout_ms=limits.batch_worst_case_ms(len(messages), parallelism=parallelism) + 60_000,
    )
    # Then one transaction issued ten invoices with consecutive numbers, in the batch's order, their buyers
    # (and their cards on file) read in one request
    assert result == {"batchItemFailures": []}
    assert (transactions.sent, transactions.cancelled) == (1, 0)
    assert buyer_reads == [10]
    by_client = {a.client_id: a for a in accounts}
    numbers = [number_of(by_client[json.loads(m["Body"])["clientId"]]) for m in messages]
    assert numbers == list(range(numbers[0], numbers[0] + 10))
    assert all_invoice_numbers() == list(range(1, counter() + 1)), "numbers stay gapless"
    # and each account got its one email, and the run counted each once
    assert all(len(invoice_mails(stack, a.email)) == 1 for a in accounts)
    assert RunItem.get(run["runId"]).invoiced == 10


def test_usage_is_asked_in_parallel_within_the_budget(stack, functions, monkeypatch):
    # Given a batch of six and a budget of three calls at once for this worker
    _, _, messages = queued_batch(stack, functions, 6)
    invoicing = functions["worker"].container.invoicing
    assert invoicing.settings.usage_parallelism >= 2
    original = invoicing.solus.usage
    lock, in_flight, peak, barrier = threading.Lock(), [0], [0], threading.Barrier(2, timeout=5)

    def watched(*args: Any) -> dict:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # proves two calls are in flight at the same time (a serial worker times out)
        try:
            return original(*args)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(invoicing.solus, "usage", watched)
    # When the worker takes the batch
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then calls overlapped, never more than the budget
    assert 2 <= peak[0] <= invoicing.settings.usage_parallelism


def test_a_duplicate_is_dropped_by_its_cancellation_reason_and_the_rest_issued_in_one_more_attempt(
    stack, functions, monkeypatch
):
    # Given five accounts, one of them already invoiced for October by another run
    run, accounts, messages = queued_batch(stack, functions, 5)
    from postpay.billing.invoicing import Job

    earlier = Job.from_message({**json.loads(messages[2]["Body"]), "runId": "manual-2022-12-earlier0"})
    [billed] = [a for a in accounts if a.client_id == earlier.client_id]
    BillingStore().start_run(earlier.run_id, trigger="manual", period=earlier.period.as_dict(), now=_now())
    invoicing = functions["worker"].container.invoicing
    assert invoicing.process(earlier, final_attempt=False) == "invoiced"
    BillingStore().counter_value()
    transactions = Transactions(monkeypatch)
    # When the batch of five is processed
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then the cancelled transaction named the duplicate; the retry without it issued the other four (the
    # third transaction records the duplicate's own "already invoiced" outcome)
    assert (transactions.sent, transactions.cancelled) == (3, 1)
    assert all(len(invoices_of(a.client_id)) == 1 for a in accounts)
    assert OutcomeItem.get(run["runId"], billed.client_id).outcome == "already_invoiced"
    assert len(invoice_mails(stack, billed.email)) == 1
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert (summary["invoiced"], summary["alreadyInvoiced"]) == (4, 1)
    assert all_invoice_numbers() == list(range(1, counter() + 1))


def test_a_moved_counter_costs_one_more_attempt_and_no_read(stack, functions, monkeypatch):
    # Given a worker whose counter, read with the batch's buyers, is stale by its transaction (another
    # worker issued three invoices in between)
    _, accounts, messages = queued_batch(stack, functions, 4)
    counter_moved_after_the_read(monkeypatch, functions["worker"].container.invoicing, by=3)
    reads: list[int] = []
    original = BillingStore.counter_value
    monkeypatch.setattr(BillingStore, "counter_value", lambda self: reads.append(1) or original(self))
    transactions = Transactions(monkeypatch)
    # When the batch is processed
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then the cancellation carried the counter's value: one more transaction, no extra read
    assert (transactions.sent, transactions.cancelled) == (2, 1)
    assert reads == []
    assert all(len(invoices_of(a.client_id)) == 1 for a in accounts)
    assert all_invoice_numbers() == list(range(1, counter() + 1))


def test_the_same_job_twice_in_one_batch_bills_and_mails_once(stack, functions):
    # Given one job delivered twice in the same batch (SQS delivers at least once)
    run, [account], [message] = queued_batch(stack, functions, 1)
    twice = [message, {**message, "MessageId": message["MessageId"] + "-again"}]
    # When the worker takes the batch
    assert run_worker(functions, twice) == {"batchItemFailures": []}
    # Then one invoice, one email, and the run counted the account once
    assert len(invoices_of(account.client_id)) == 1
    assert len(invoice_mails(stack, account.email)) == 1
    record = RunItem.get(run["runId"])
    assert (record.invoiced, record.already_invoiced) == (1, 0)


def test_a_batch_mixes_invoices_nothing_to_bill_and_a_refused_answer(stack, functions):
    # Given a batch with an account with usage, one without, and one SolusVM answers for another user
    from tests.integration.conftest import fault

    with_usage = enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1], enrolled_at=ENROLLED)
    without = enrolled_account(stack, functions, servers=[], enrolled_at=ENROLLED)
    wrong = enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1], enrolled_at=ENROLLED)
    fault(stack, mode="usage", path=f"users/{wrong.solus_user_id}/usage", change={"user_id": 999_999})
    run = invoke(functions, DECEMBER)
    mine = {a.client_id for a in (with_usage, without, wrong)}
    messages = [
        m
        for m in receive_all(stack)
        if json.loads(m["Body"])["runId"] == run["runId"] and json.loads(m["Body"])["clientId"] in mine
    ]
    # When the worker takes the batch
    result = run_worker(functions, messages)
    # Then each ends as on its own: invoiced, nothing to bill, failed at once (not retried)
    assert result == {"batchItemFailures": []}
    outcomes = {c: OutcomeItem.get(run["runId"], c).outcome for c in mine}
    assert outcomes == {
        with_usage.client_id: "invoiced",
        without.client_id: "nothing_to_bill",
        wrong.client_id: "failed",
    }
    assert len(invoice_mails(stack, with_usage.email)) == 1


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_a_batch_is_prepared_together_only_as_far_as_the_time_left_allows(stack, functions, monkeypatch):
    # Given three jobs in one batch, and an invocation with time for a worst-case batch of two only
    from postpay.limits import START_JOB_MIN_REMAINING_MS, batch_worst_case_ms
    from tests.integration.test_worker_limits import Countdown

    run, _, messages = queued_batch(stack, functions, 3)
    parallelism = functions["worker"].container.invoicing.settings.usage_parallelism
    context = Countdown([batch_worst_case_ms(2, parallelism=parallelism), START_JOB_MIN_REMAINING_MS - 1])
    BillingStore().counter_value()
    transactions = Transactions(monkeypatch)
    # When the worker takes the batch
    answer = functions["worker"].handler(sqs_event(messages, QUEUE_ARN), context)
    # Then the first two are issued together in one transaction, and the third goes back untouched
    assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == [messages[2]["MessageId"]]
    assert (transactions.sent, transactions.cancelled) == (1, 0)
    client = {m["MessageId"]: json.loads(m["Body"])["clientId"] for m in messages}
    assert [len(invoices_of(client[m["MessageId"]])) for m in messages] == [1, 1, 0]
    assert OutcomeItem.count(run["runId"], OutcomeItem.client_id == client[messages[2]["MessageId"]]) == 0


def test_a_void_months_rebill_in_a_batch_keeps_the_void_invoice_and_survives_a_cancelled_transaction(
    stack, functions, monkeypatch
):
    # Given two accounts invoiced for December, and the first one's invoice voided
    _, (voided, other), messages = queued_batch(stack, functions, 2)
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    [first] = invoices_of(voided.client_id)
    invoke(functions, {"voidInvoice": first.number, "reason": "wrong price"})
    # and that month re-billed: its job queued
    rebill = invoke(functions, {"rebill": {"client": voided.client_id, "period": "2022-12"}})
    [job] = [m for m in receive_all(stack) if json.loads(m["Body"])["runId"] == rebill["runId"]]
    [other_job] = [m for m in messages if json.loads(m["Body"])["clientId"] == other.client_id]
    transactions = Transactions(monkeypatch)
    billing = functions["worker"].container.invoicing.billing
    issued: list[Any] = []
    issue_batch = billing.issue_batch
    monkeypatch.setattr(
        billing, "issue_batch", lambda entries, **kw: issued.extend(issue_batch(entries, **kw)) or issued
    )
    # When one batch holds the re-bill, then a redelivery of the other account's settled job (its record is
    # refused after the re-bill's three items: the cancellation is read at each entry's own positions)
    result = run_worker(functions, [job, other_job])
    # Then the first transaction was cancelled for the settled job only (found billed by its record), and
    # the re-bill issued in the next
    assert result == {"batchItemFailures": []}
    assert (transactions.sent, transactions.cancelled) == (2, 1)
    assert [type(r).__name__ for r in issued] == ["Invoice", "AlreadyBilled"]
    current = tables.InvoiceItem.get(f"{voided.client_id}#2022-12")
    assert current.status == "unpaid" and int(re.sub(r"\D", "", current.number)) == counter()
    # and the void invoice is kept, unchanged, under its own key; the other account still has one invoice
    kept = tables.InvoiceItem.get(f"{voided.client_id}#2022-12#{first.number}")
    assert (kept.status, kept.number) == ("void", first.number)
    assert len(invoices_of(other.client_id)) == 1
    assert all_invoice_numbers() == list(range(1, counter() + 1)), "numbers stay gapless"
    assert RunItem.get(rebill["runId"]).invoiced == 1


def test_a_batch_reads_its_buyers_their_cards_and_the_counter_in_one_request_per_hundred_keys(
    stack, functions, monkeypatch
):
    from postpay.adapters.batch_reads import buyers_with_cards
    from postpay.adapters.tables import PaymentItem

    # Given two accounts, one with a card on file and one whose customer has no card (yet)
    carded, bare = (enrolled_account(stack, functions, enrolled_at=ENROLLED) for _ in range(2))
    PaymentItem(f"card#{carded.client_id}", customer="cus_1", payment_method="pm_1").save()
    PaymentItem(f"card#{bare.client_id}", customer="cus_2").save()
    client = tables.connection().client
    requests: list[dict] = []
    original = client.batch_get_item
    monkeypatch.setattr(
        client, "batch_get_item", lambda **kwargs: requests.append(kwargs) or original(**kwargs)
    )
    # When a batch of two reads them: one request over the three tables, the invoice counter with them (the
    # next transaction's first guess)
    BillingStore._counter_hint = None
    found, cards = buyers_with_cards([carded.email, bare.email], [carded.client_id, bare.client_id])
    assert set(found) == {carded.email, bare.email} and found[carded.email].client_id == carded.client_id
    assert cards == {carded.client_id}
    assert len(requests) == 1 and len(requests[0]["RequestItems"]) == 3
    assert BillingStore._counter_hint == counter()
    # and 121 keys (58 unknown emails and 58 unknown clients besides them) take two requests; the unknown
    # are left out
    requests.clear()
    emails = [carded.email, bare.email, *(f"nobody-{i}@example.com" for i in range(58))]
    clients = [carded.client_id, bare.client_id, *range(10**9, 10**9 + 58)]
    found, cards = buyers_with_cards(emails, clients)
    assert set(found) == {carded.email, bare.email} and cards == {carded.client_id}
    assert len(requests) == 2
    assert sum(len(t["Keys"]) for r in requests for t in r["RequestItems"].values()) == 121


def test_a_batch_marks_each_email_sent_while_sending_the_next_and_retries_one_whose_mark_failed(
    stack, functions, monkeypatch
):
    # Given a batch of three invoices, the "sent" mark of the second one's email failing
    run, accounts, messages = queued_batch(stack, functions, 3)
    billing = functions["worker"].container.invoicing.billing
    original = billing.mark_emailed
    marks: list[tuple[int, str]] = []
    [failing] = [a for a in accounts if a.client_id == json.loads(messages[1]["Body"])["clientId"]]

    def mark(invoice: Any, message_id: str, now: datetime) -> None:
        marks.append((invoice.client_id, threading.current_thread().name))
        if invoice.client_id == failing.client_id:
            raise ConnectionError("DynamoDB did not answer")
        original(invoice, message_id, now)

    monkeypatch.setattr(billing, "mark_emailed", mark)
    # When the worker takes the batch
    result = run_worker(functions, messages)
    # Then every email went out once, each marked off the worker's thread (while the next one was sent), and
    # only the job whose mark failed is handed back to the queue, its invoice's email still leased
    assert result == {"batchItemFailures": [{"itemIdentifier": messages[1]["MessageId"]}]}
    assert all(len(invoice_mails(stack, a.email)) == 1 for a in accounts)
    assert sorted(client for client, _ in marks) == sorted(a.client_id for a in accounts)
    assert all(thread.startswith("mark") for _, thread in marks)
    sent = {a.client_id: invoices_of(a.client_id)[0].email_sent_at for a in accounts}
    assert [client for client, at in sent.items() if at is None] == [failing.client_id]
    # and its redelivery within the lease sends nothing again (the email may be on its way: at least once)
    monkeypatch.setattr(billing, "mark_emailed", original)
    again = delivered(messages[1], 2)
    with pytest.raises(BatchProcessingError):  # its one record failed: the whole batch goes back
        run_worker(functions, [again])
    assert len(invoice_mails(stack, failing.email)) == 1
    assert RunItem.get(run["runId"]).invoiced == 3
    forget(messages)


def _composed(monkeypatch, invoicing) -> list[tuple[str, float]]:
    """Each invoice email composed: its invoice's number and when its composing began."""
    import time

    composed: list[tuple[str, float]] = []
    original = invoicing._invoice_email

    def compose(invoice: Any, **kwargs: Any) -> Any:
        composed.append((invoice.number, time.monotonic()))
        return original(invoice, **kwargs)

    monkeypatch.setattr(invoicing, "_invoice_email", compose)
    return composed


def _attached(stack, account) -> list[str]:
    [mail] = invoice_mails(stack, account.email)
    return list(mail.attachments)


def test_the_first_email_is_composed_while_the_batchs_transaction_is_on_the_network(
    stack, functions, monkeypatch
):
    import time

    # Given a batch of three, and a transaction that takes a while to answer
    _, accounts, messages = queued_batch(stack, functions, 3)
    invoicing = functions["worker"].container.invoicing
    composed = _composed(monkeypatch, invoicing)
    connection = tables.connection()
    original = connection.transact_write_items
    answered: list[float] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        time.sleep(0.3)
        answered.append(time.monotonic())
        return result

    monkeypatch.setattr(connection, "transact_write_items", slow)
    # When the worker takes the batch
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then the first invoice's email began before the transaction answered, and was the one sent (each
    # email composed once, each carrying its own invoice)
    [done] = answered
    first = number_of(next(a for a in accounts if a.client_id == json.loads(messages[0]["Body"])["clientId"]))
    assert composed[0][1] < done and int(re.sub(r"\D", "", composed[0][0])) == first
    assert len(composed) == 3
    for account in accounts:
        [invoice] = invoices_of(account.client_id)
        assert _attached(stack, account) == [f"{invoice.number}.pdf"]


def test_an_email_composed_ahead_for_a_cancelled_transaction_is_not_sent(stack, functions, monkeypatch):
    # Given a batch whose first transaction finds the counter moved (its numbers are not the ones issued)
    _, accounts, messages = queued_batch(stack, functions, 3)
    invoicing = functions["worker"].container.invoicing
    composed = _composed(monkeypatch, invoicing)
    counter_moved_after_the_read(monkeypatch, invoicing, by=2)
    # When the worker takes the batch
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then the email composed for the cancelled attempt was dropped: each account got its own invoice's
    assert len(composed) == 4
    for account in accounts:
        [invoice] = invoices_of(account.client_id)
        assert _attached(stack, account) == [f"{invoice.number}.pdf"]
    assert all_invoice_numbers() == list(range(1, counter() + 1))


def test_a_failed_mark_whose_failure_cannot_be_recorded_still_answers_the_batch_and_leaves_nothing_behind(
    stack, functions, monkeypatch
):
    # Given a batch of three on its final attempt, the second email's "sent" mark failing and DynamoDB not
    # taking that job's failed outcome either (the outage that failed the mark)
    _, _, messages = queued_batch(stack, functions, 3)
    assert functions["worker"].container.settings.invoice_max_attempts == 5
    worker = functions["worker"]
    billing = worker.container.invoicing.billing
    failing = json.loads(messages[1]["Body"])["clientId"]
    mark, record = billing.mark_emailed, billing.record_outcome

    def mark_or_fail(invoice: Any, message_id: str, now: datetime) -> None:
        if invoice.client_id == failing:
            raise ConnectionError("DynamoDB did not answer")
        mark(invoice, message_id, now)

    def record_or_fail(run_id: str, client_id: int, *args: Any, **kwargs: Any) -> bool:
        if client_id == failing:
            raise ConnectionError("DynamoDB did not answer")
        return record(run_id, client_id, *args, **kwargs)

    monkeypatch.setattr(billing, "mark_emailed", mark_or_fail)
    monkeypatch.setattr(billing, "record_outcome", record_or_fail)
    # When the worker takes the batch
    result = run_worker(functions, [delivered(m, 5) for m in messages])
    # Then only that job goes back to the queue (its next delivery records it: the attempts are used), and
    # nothing of this batch is left for the next one to answer for
    assert result == {"batchItemFailures": [{"itemIdentifier": messages[1]["MessageId"]}]}
    assert worker.finishing == {}
    monkeypatch.setattr(billing, "record_outcome", record)
    forget(messages)
    _, _, later = queued_batch(stack, functions, 2)
    assert run_worker(functions, later) == {"batchItemFailures": []}


def test_without_card_payments_the_batch_composes_each_email_once_and_marks_while_sending_the_next(
    stack, functions, monkeypatch
):
    import time

    # Given a worker without card payments (Stripe not configured), a batch of three, a slow transaction
    # and slow "sent" marks
    _, accounts, messages = queued_batch(stack, functions, 3)
    invoicing = functions["worker"].container.invoicing
    for name in ("collect", "card_to_charge", "with_cards"):
        monkeypatch.setattr(invoicing, name, None)
    composed = _composed(monkeypatch, invoicing)
    connection = tables.connection()
    transact = connection.transact_write_items

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = transact(*args, **kwargs)
        time.sleep(0.3)
        return result

    monkeypatch.setattr(connection, "transact_write_items", slow)
    mark = invoicing.billing.mark_emailed
    marked: list[float] = []

    def slow_mark(invoice: Any, message_id: str, now: datetime) -> None:
        time.sleep(0.3)
        mark(invoice, message_id, now)
        marked.append(time.monotonic())

    monkeypatch.setattr(invoicing.billing, "mark_emailed", slow_mark)
    deliver = invoicing.mailer.deliver
    delivered: list[float] = []
    monkeypatch.setattr(
        invoicing.mailer, "deliver", lambda message: delivered.append(time.monotonic()) or deliver(message)
    )
    # When the worker takes the batch
    assert run_worker(functions, messages) == {"batchItemFailures": []}
    # Then the first email composed while the transaction was out is the one sent (each composed once), and
    # each email's mark is written while the next one is sent
    assert len(composed) == 3
    assert len(delivered) == 3 and len(marked) == 3
    assert delivered[1] < marked[0] and delivered[2] < marked[1]
    for account in accounts:
        [invoice] = invoices_of(account.client_id)
        assert _attached(stack, account) == [f"{invoice.number}.pdf"]
        assert invoice.email_sent_at is not None


def test_a_job_delivered_twice_beside_another_is_not_handed_back_while_its_mark_is_on_its_way(
    stack, functions, monkeypatch
):
    import time

    # Given a batch of two jobs, the first delivered twice, and a slow "sent" mark
    run, accounts, messages = queued_batch(stack, functions, 2)
    twice = [messages[0], {**messages[0], "MessageId": messages[0]["MessageId"] + "-again"}, messages[1]]
    billing = functions["worker"].container.invoicing.billing
    mark = billing.mark_emailed

    def slow_mark(invoice: Any, message_id: str, now: datetime) -> None:
        time.sleep(0.5)
        mark(invoice, message_id, now)

    monkeypatch.setattr(billing, "mark_emailed", slow_mark)
    # When the worker takes the batch
    result = run_worker(functions, twice)
    # Then the copy ends as the job did (its email sent and marked): nothing goes back to the queue
    assert result == {"batchItemFailures": []}
    assert all(len(invoice_mails(stack, a.email)) == 1 for a in accounts)
    assert RunItem.get(run["runId"]).invoiced == 2
