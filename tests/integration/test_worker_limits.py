"""A job never dies silently: the worker starts a job only with time for it, and a job whose last attempt
died (a time-out, a crash) is recorded as failed with its reason, so the run finishes and lists it."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from local.events import LambdaContext
from local.poller import sqs_event
from postpay.adapters.tables import OutcomeItem
from postpay.billing.invoicing import LAST_ATTEMPT_DIED
from postpay.limits import DEAD_LETTER_MAX_RECEIVE_COUNT, INVOICE_MAX_ATTEMPTS, START_JOB_MIN_REMAINING_MS
from tests.integration.billing_helpers import enrolled_account, invoices_of, invoke, receive_all
from tests.integration.test_invoicing import OCTOBER_SERVERS

ARN = "arn:aws:sqs:us-east-1:123456789012:postpay-local-invoice-jobs"


class Countdown(LambdaContext):
    """A context whose time left is scripted: the last value repeats."""

    def __init__(self, remaining: list[int]) -> None:
        super().__init__(function_name="worker")
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining.pop(0) if len(self.remaining) > 1 else self.remaining[0]


def _jobs_of(stack, run: dict) -> list[dict]:
    """Every job of the run on the queue. The queue also holds the earlier tests' jobs (each run queues one
    for every account the session enrolled), more than one ``receive_all`` takes: received until empty."""
    jobs: dict[str, dict] = {}
    for _ in range(50):
        batch = receive_all(stack)
        if not batch:
            break
        jobs.update({m["MessageId"]: m for m in batch if json.loads(m["Body"])["runId"] == run["runId"]})
    return list(jobs.values())


def _delivered(messages: list[dict], client_id: int, delivery: int) -> dict:
    """The job of ``client_id``, as the queue's ``delivery``-th delivery of it."""
    [message] = [m for m in messages if _client(m) == client_id]
    message["Attributes"]["ApproximateReceiveCount"] = str(delivery)
    return message


def _client(message: dict) -> int:
    return int(json.loads(message["Body"])["clientId"])


def test_jobs_without_time_left_are_handed_back_untouched(stack, functions):
    # Given three accounts to invoice, and an invocation with time for exactly one worst-case job
    accounts = [enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1]) for _ in range(3)]
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    queued = _jobs_of(stack, run)
    messages = [_delivered(queued, a.client_id, 1) for a in accounts]
    context = Countdown([START_JOB_MIN_REMAINING_MS + 1, START_JOB_MIN_REMAINING_MS - 1])
    # When the worker gets them in one batch
    answer = functions["worker"].handler(sqs_event(messages, ARN), context)
    # Then the first job is done, and the others go back to the queue with nothing recorded
    handed_back = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert handed_back == {m["MessageId"] for m in messages[1:]}
    assert len(invoices_of(_client(messages[0]))) == 1
    for message in messages[1:]:
        assert invoices_of(_client(message)) == []
        assert functions["worker"].container.billing.outcome_of(run["runId"], _client(message)) is None


def test_a_last_attempt_that_died_is_recorded_as_failed_and_the_run_finishes(stack, functions):
    # Given a job whose last attempt timed out (or was handed back) without recording anything
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    # (the run also bills the other tests' accounts: their jobs come on their last attempt, so each of
    # them ends with an outcome too, whatever state other tests left them in)
    messages = _jobs_of(stack, run)
    for other in messages:
        other["Attributes"]["ApproximateReceiveCount"] = str(INVOICE_MAX_ATTEMPTS)
    message = _delivered(messages, account.client_id, INVOICE_MAX_ATTEMPTS + 1)
    assert INVOICE_MAX_ATTEMPTS + 1 == DEAD_LETTER_MAX_RECEIVE_COUNT, "the queue delivers it once more"
    # When the queue delivers it once more
    answer = functions["worker"].handler(sqs_event(messages, ARN), LambdaContext(timeout_ms=900_000))
    # Then it is not processed again: it is recorded as failed with the reason, and left to the DLQ
    assert message["MessageId"] in [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    assert invoices_of(account.client_id) == []
    outcome = OutcomeItem.get(run["runId"], account.client_id)
    assert outcome.outcome == "failed" and outcome.reason == LAST_ATTEMPT_DIED
    # and the run finishes, listing it
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert summary["finished"], summary
    assert summary["failures"][str(account.client_id)] == LAST_ATTEMPT_DIED


def test_an_extra_delivery_after_a_recorded_outcome_changes_nothing(stack, functions):
    # Given a job whose last attempt failed with its own reason (recorded then), delivered once more
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    message = _delivered(_jobs_of(stack, run), account.client_id, INVOICE_MAX_ATTEMPTS + 1)
    container = functions["worker"].container
    container.billing.record_outcome(
        run["runId"], account.client_id, "failed", container.clock.now(), reason="HTTP 503"
    )
    # When the queue delivers it once more (alone: the whole invocation fails, as Powertools does when
    # every record of a batch failed)
    with pytest.raises(BatchProcessingError):
        functions["worker"].handler(sqs_event([message], ARN), LambdaContext(timeout_ms=300_000))
    # Then the first reason stays, counted once, and the job goes on to the dead-letter queue
    assert OutcomeItem.get(run["runId"], account.client_id).reason == "HTTP 503"
    assert invoke(functions, {"runStatus": run["runId"]})["failed"] == 1
