"""Operating at scale: missed scheduled runs show, operator runs return at once and join, dry runs page."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from tests.integration.billing_helpers import (
    ShiftedClock,
    drain,
    enrolled_account,
    invoke,
    receive_all,
)
from tests.integration.test_invoicing import OCTOBER_SERVERS


def scheduled(functions) -> dict:
    return invoke(functions, {"schedule": "daily", "scheduledTime": "2022-08-15T00:05:00Z"})


def test_a_scheduled_run_reports_the_gap_since_the_previous_one(functions, monkeypatch):
    # Given a scheduled daily run
    automation = functions["automation"].container.automation
    scheduled(functions)
    # When the next one comes two days later (a day was missed)
    monkeypatch.setattr(automation, "clock", ShiftedClock(timedelta(hours=48)))
    later = scheduled(functions)
    # Then it says so (the MissedDailyRun alarm watches this metric)
    assert 47.9 <= later["hoursSinceLastDailyRun"] <= 48.1
    monkeypatch.setattr(automation, "clock", ShiftedClock(timedelta(hours=49)))
    assert 0.9 <= scheduled(functions)["hoursSinceLastDailyRun"] <= 1.1


class RecordingDispatcher:
    """Stands in for Lambda's asynchronous invocation: remembers what would be invoked."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    def queue_run(self, run_id: str) -> None:
        self.runs.append(run_id)


def test_an_operator_run_returns_at_once_and_its_jobs_are_queued_asynchronously(
    stack, functions, monkeypatch
):
    # Given the function as deployed: it hands queuing to an asynchronous invocation of itself
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1])
    invoicing = functions["automation"].container.invoicing
    dispatcher = RecordingDispatcher()
    monkeypatch.setattr(invoicing, "dispatcher", dispatcher)
    # When the operator asks for a month
    accepted = invoke(functions, {"invoicingDate": "2022-11-01"})
    # Then the answer comes before any account is listed or queued …
    assert accepted["state"] == "queuing" and accepted["queued"] == 0 and not accepted["joined"]
    assert dispatcher.runs == [accepted["runId"]]
    # … and the asynchronous invocation queues them (once, however often it is retried)
    queued = invoke(functions, {"queueRun": accepted["runId"]})
    assert queued["state"] == "queued" and queued["queued"] >= 1
    again = invoke(functions, {"queueRun": accepted["runId"]})
    assert again["queued"] == queued["queued"]
    jobs = [json.loads(m["Body"]) for m in receive_all(stack) if accepted["runId"] in m["Body"]]
    assert len(jobs) == queued["queued"]
    assert account.client_id in {j["clientId"] for j in jobs}


def test_an_identical_request_within_minutes_joins_the_first_run(stack, functions, monkeypatch):
    # Given the join window as deployed (10 minutes)
    invoicing = functions["automation"].container.invoicing
    monkeypatch.setattr(invoicing, "settings", dataclasses.replace(invoicing.settings, run_join_minutes=10))
    monkeypatch.setattr(invoicing, "dispatcher", RecordingDispatcher())
    # When the same request comes twice (a retried CLI call, a second click), then another date
    first = invoke(functions, {"invoicingDate": "2022-06-01"})
    second = invoke(functions, {"invoicingDate": "2022-06-01"})
    dry = invoke(functions, {"invoicingDate": "2022-06-01", "dryRun": True})
    other = invoke(functions, {"invoicingDate": "2022-06-02"})
    # Then the second joins the first; a dry run and another request are runs of their own
    assert second["runId"] == first["runId"] and second["joined"] and not first["joined"]
    # and the joined answer says plainly that accounts enrolled since are not in it, and when to send again
    assert "note" not in first
    note = second["note"]
    assert (
        note.startswith(f"joined run {first['runId']} started at ")
        and "(same request within 10 minutes)" in note
    )
    assert "accounts enrolled since are not in it; send it again after " in note
    assert note.endswith(" UTC or with another invoicingDate")
    assert len({first["runId"], dry["runId"], other["runId"]}) == 3
    assert invoicing.dispatcher.runs == [first["runId"], dry["runId"], other["runId"]]
    # And after the window, the same request starts a new run (running a month again is safe)
    monkeypatch.setattr(invoicing, "clock", ShiftedClock(timedelta(minutes=11)))
    assert invoke(functions, {"invoicingDate": "2022-06-01"})["runId"] != first["runId"]


def test_a_runs_report_pages_through_every_account(stack, functions, worker, monkeypatch):
    # Given a dry run over several accounts, and pages of two
    import postpay.billing.automation as automation_module

    accounts = [enrolled_account(stack, functions, servers=OCTOBER_SERVERS[:1]) for _ in range(3)]
    monkeypatch.setattr(automation_module, "PAGE_SIZE", 2)
    run = invoke(functions, {"invoicingDate": "2022-11-01", "dryRun": True})
    drain(worker)
    # When the operator pages through its status
    seen: list[int] = []
    page = invoke(functions, {"runStatus": run["runId"]})
    while True:
        assert len(page["accounts"]) <= 2
        seen += [a["clientId"] for a in page["accounts"]]
        if page["next"] is None:
            break
        page = invoke(functions, {"runStatus": run["runId"], "after": page["next"]})
    # Then every account appears once, in order, with what it would be invoiced
    assert seen == sorted(set(seen)) and len(seen) == page["queued"]
    assert {a.client_id for a in accounts} <= set(seen)
