from __future__ import annotations

from datetime import UTC, datetime

from postpay.billing.automation import run_summary
from postpay.models import RunRecord

START = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)


def _run(
    state: str, queued: int, *, invoiced: int = 0, failed: int = 0, updated: datetime = START
) -> RunRecord:
    counts = {
        "queued": queued,
        "invoiced": invoiced,
        "already_invoiced": 0,
        "nothing_to_bill": 0,
        "failed": failed,
        "would_invoice": 0,
    }
    return RunRecord("r", "operator", {}, state, counts, START, updated, {})


def test_finished_agrees_with_the_counters():
    assert run_summary(_run("queued", 2, invoiced=1))["state"] == "queued"
    summary = run_summary(_run("queued", 2, invoiced=1, failed=1))
    assert (summary["state"], summary["finished"], summary["done"], summary["pending"]) == (
        "finished",
        True,
        2,
        0,
    )
    # still queuing: not finished whatever the counters say, and no pending count yet
    queuing = run_summary(_run("queuing", 0, invoiced=1))
    assert (queuing["finished"], queuing["state"], queuing["pending"]) == (False, "queuing", None)


def test_start_and_finish_times_are_ordered_when_the_worker_clock_lags():
    summary = run_summary(_run("queued", 1, invoiced=1, updated=datetime(2026, 11, 26, tzinfo=UTC)))
    assert summary["startedAt"] <= summary["finishedAt"] and summary["updatedAt"] == summary["startedAt"]
