"""Invoicing a month end to end: the run, the queue, the worker, SolusVM usage, DynamoDB, SES."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
import requests

from postpay.adapters.tables import InvoiceItem, OutcomeItem, RunItem
from postpay.billing.commands import PayloadError
from postpay.billing.invoicing import invoice_lines
from postpay.models import Pricing
from tests.integration.billing_helpers import (
    all_invoice_numbers,
    counter,
    drain,
    enrolled_account,
    invoices_of,
    invoke,
)
from tests.integration.conftest import fault

# October 2022: 744 hours. Small: 7 tokens/h capped at 5000 a month; Medium: 14/h capped at 10000.
OCTOBER_SERVERS = [
    {
        "plan_id": 1,
        "created_at": "2022-09-15T00:00:00+00:00",
        "name": "web-1",
    },  # 744 h -> 5208 -> capped 5000
    {
        "plan_id": 2,
        "created_at": "2022-10-10T12:30:00+00:00",
        "deleted_at": "2022-10-20T00:00:00+00:00",
        "name": "batch-1",
    },  # 227.5 h -> 228 started hours -> 3192 tokens
    {"plan_id": 1, "created_at": "2022-11-05T00:00:00+00:00", "name": "later"},  # no October usage: no line
]


def test_a_month_is_invoiced_exactly_with_one_line_per_server(stack, functions, worker):
    # Given an account with known October usage
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    # When the operator invoices October and the worker runs
    started = invoke(functions, {"invoicingDate": "2022-11-01"})
    assert started["queued"] >= 1 and started["runId"].startswith("manual-2022-10-")
    drain(worker)
    # Then exactly one invoice with the exact lines, amounts and total
    [item] = invoices_of(account.client_id)
    doc = json.loads(item.document)
    assert re.fullmatch(r"INV-\d{6}", doc["number"])
    lines = {line["name"]: line for line in doc["lines"]}
    assert set(lines) == {"web-1", "batch-1"}
    assert (lines["web-1"]["hours"], lines["web-1"]["tokens"], lines["web-1"]["amount"]) == (
        744,
        5000,
        "5.00",
    )
    assert (lines["batch-1"]["hours"], lines["batch-1"]["tokens"], lines["batch-1"]["amount"]) == (
        228,
        3192,
        "3.19",
    )
    assert lines["batch-1"]["deleted"] is True
    assert doc["total"] == "8.19" and doc["currency"] == "USD" and doc["token_price"] == "0.001"
    assert (doc["period_start"], doc["period_end"], doc["timezone"]) == ("2022-10-01", "2022-10-31", "UTC")
    assert item.status == "unpaid"
    # and the email carries the lines, the total, the due date and a link to the invoice
    [mail] = [m for m in stack.mails_to(account.email) if m.subject.startswith("Invoice")]
    assert doc["number"] in mail.subject and "8.19 USD" in mail.html and doc["due_on"] in mail.html
    assert f"http://localhost:8080/invoices/{doc['number']}" in mail.html
    # and the run's record is current
    summary = invoke(functions, {"runStatus": started["runId"]})
    assert summary["finished"] and summary["invoiced"] >= 1 and summary["failed"] == 0


def test_invoice_is_reproducible_from_the_usage_it_stored(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    doc = json.loads(item.document)
    recomputed = invoice_lines(json.loads(item.usage), Pricing(Decimal(doc["token_price"]), doc["currency"]))
    assert [str(line.amount) for line in recomputed] == [line["amount"] for line in doc["lines"]]
    assert str(sum(line.amount for line in recomputed)) == doc["total"]


def test_running_the_month_again_never_bills_twice(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    first = invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    second = invoke(functions, {"invoicingDate": "2022-11-15"})
    drain(worker)
    assert len(invoices_of(account.client_id)) == 1
    assert len([m for m in stack.mails_to(account.email) if m.subject.startswith("Invoice")]) == 1
    outcome = OutcomeItem.get(second["runId"], account.client_id)
    assert outcome.outcome == "already_invoiced"
    assert OutcomeItem.get(first["runId"], account.client_id).outcome == "invoiced"


def test_no_usage_is_recorded_as_nothing_to_bill(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=[])
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    assert invoices_of(account.client_id) == []
    assert InvoiceItem.get(f"{account.client_id}#2022-10").outcome == "nothing_to_bill"
    assert OutcomeItem.get(run["runId"], account.client_id).outcome == "nothing_to_bill"
    assert not [m for m in stack.mails_to(account.email) if m.subject.startswith("Invoice")]


def test_accounts_enrolled_after_the_period_are_not_billed(stack, functions, worker):
    from datetime import UTC, datetime

    late = enrolled_account(
        stack, functions, servers=OCTOBER_SERVERS, enrolled_at=datetime(2022, 11, 2, tzinfo=UTC)
    )
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    with pytest.raises(InvoiceItem.DoesNotExist):
        InvoiceItem.get(f"{late.client_id}#2022-10")


def test_one_failing_account_does_not_stop_the_others_and_is_reported(stack, functions, worker):
    ok = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    broken = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    fault(stack, mode="status", status=503, path=f"users/{broken.solus_user_id}/usage")
    run = invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker, rounds=80)
    assert len(invoices_of(ok.client_id)) == 1
    assert invoices_of(broken.client_id) == []
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert summary["failed"] == 1 and "HTTP 503" in summary["failures"][str(broken.client_id)]
    assert summary["finished"]
    # When SolusVM is back and the dead-lettered job is redriven, the account is invoiced once
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)
    from postpay.billing.invoicing import Job
    from postpay.periods import Period

    job = Job(
        run["runId"], broken.client_id, broken.email, broken.solus_user_id, Period.from_dict(run["period"])
    )
    assert functions["automation"].container.invoicing.process(job, final_attempt=True) == "invoiced"
    assert len(invoices_of(broken.client_id)) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"invoicingDate": "2022-13-01"}, "invoicingDate must be a date"),
        ({"invoicingDate": "01/11/2022"}, "invoicingDate must be a date"),
        ({"invoicingDate": 20221101}, "invoicingDate must be a date"),
        ({"invoicingDate": "2099-01-01"}, "has not ended yet"),
        ({"invoicingDate": "2022-11-01", "dryrun": True}, "unknown keys ['dryrun']"),
        ({"invoicingDate": "2022-11-01", "dryRun": "yes"}, "dryRun must be true or false"),
        ({"invoicingDate": "2022-11-01", "runStatus": "x"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"markPaid": "INV-999999", "reference": "wire"}, "no invoice 'INV-999999'"),
        ({"markPaid": "INV-000001"}, "reference must be a non-empty string"),
        ({"runStatus": "nope"}, "no run 'nope'"),
    ],
)
def test_malformed_operator_payloads_fail_with_a_message_and_change_nothing(functions, payload, message):
    runs_before = RunItem.count()
    with pytest.raises(PayloadError) as error:
        invoke(functions, payload)
    assert message in str(error.value)
    assert RunItem.count() == runs_before


def test_dry_run_reports_lines_and_totals_and_writes_nothing(stack, functions, worker):
    # Given an account with usage
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    # When a dry run is requested and its jobs are processed
    run = invoke(functions, {"invoicingDate": "2022-11-01", "dryRun": True})
    assert run["dryRun"] and run["runId"].startswith("dry-2022-10-")
    drain(worker)
    # Then its report holds the account's lines and total, page by page …
    entry = find_in_report(functions, run["runId"], account.client_id)
    assert entry["outcome"] == "would_invoice" and entry["total"] == "8.19" and len(entry["lines"]) == 2
    summary = invoke(functions, {"runStatus": run["runId"]})
    assert summary["finished"] and summary["wouldInvoice"] >= 1 and summary["invoiced"] == 0
    # … and nothing was invoiced, numbered or sent (the counter may move for jobs other tests left queued:
    # what holds is that every number taken is an invoice)
    assert all_invoice_numbers() == list(range(1, counter() + 1))
    assert invoices_of(account.client_id) == [] and not stack.mails_to(account.email)


def find_in_report(functions, run_id: str, client_id: int) -> dict:
    after = None
    while True:
        page = invoke(functions, {"runStatus": run_id, **({"after": after} if after is not None else {})})
        for entry in page["accounts"]:
            if entry["clientId"] == client_id:
                return entry
        if page["next"] is None:
            raise AssertionError(f"client {client_id} is not in the report of {run_id}")
        after = page["next"]
