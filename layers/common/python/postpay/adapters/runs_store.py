"""DynamoDB for invoicing runs: the run record, its counts, and its per-account outcomes read back.

A run is created once per id (a duplicate scheduled event finds it); an operator's identical requests
within the join window share one run. Outcomes are written with the invoices they count, in the issuing
transactions of ``billing_store``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError

from postpay.adapters.tables import OutcomeItem, RunItem, conditional_failed
from postpay.models import OUTCOMES, RunRecord

DAILY_HEARTBEAT = "daily-heartbeat"  # an invoice-runs item: when the last scheduled daily run happened
FAILURES_SHOWN = 100  # a run's summary lists this many failures; runStatus pages show every outcome


class RunsStore:
    def start_run(
        self, run_id: str, *, trigger: str, period: dict[str, str], now: datetime, dry_run: bool = False
    ) -> bool:
        """Creates the run record; False if it exists (a duplicate scheduled event)."""
        try:
            RunItem(
                run_id,
                trigger=trigger,
                period=json.dumps(period),
                state="queuing",
                dry_run=dry_run or None,
                started_at=now,
                updated_at=now,
            ).save(condition=RunItem.run_id.does_not_exist())
        except PutError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def claim_request(self, key: str, run_id: str, *, now: datetime, window: timedelta) -> str:
        """The run for an operator's request: ``run_id`` if no identical request came within ``window``,
        else the run that one started (the second request joins it)."""
        item_key = f"request#{key}"
        try:
            RunItem(
                item_key,
                trigger="request",
                period="{}",
                state="request",
                joins=run_id,
                started_at=now,
                updated_at=now,
            ).save(condition=RunItem.run_id.does_not_exist() | (RunItem.updated_at < now - window))
        except PutError as error:
            if not conditional_failed(error):
                raise
            return RunItem.get(item_key, consistent_read=True).joins or run_id
        return run_id

    def outcomes(
        self, run_id: str, *, after: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of a run's per-account outcomes, by client id; the last client id if there may be more."""
        condition = OutcomeItem.client_id > after if after is not None else None
        page: list[dict[str, Any]] = []
        for item in OutcomeItem.query(run_id, condition, consistent_read=True, limit=limit):
            entry: dict[str, Any] = {"clientId": int(item.client_id), "outcome": item.outcome}
            if item.invoice_number:
                entry["invoice"] = item.invoice_number
            if item.reason:
                entry["reason"] = item.reason
            if item.detail:
                entry.update(json.loads(item.detail))
            page.append(entry)
            if len(page) == limit:
                return page, int(item.client_id)
        return page, None

    def finish_queuing(self, run_id: str, queued: int, now: datetime) -> None:
        RunItem(run_id).update(
            actions=[RunItem.queued.set(queued), RunItem.state.set("queued"), RunItem.updated_at.set(now)]
        )

    def run(self, run_id: str) -> RunRecord | None:
        try:
            item = RunItem.get(run_id, consistent_read=True)
        except RunItem.DoesNotExist:
            return None
        failures: dict[int, str] = {}
        for o in OutcomeItem.query(
            run_id, filter_condition=OutcomeItem.outcome == "failed", consistent_read=True
        ):
            failures[int(o.client_id)] = o.reason or ""
            if len(failures) >= FAILURES_SHOWN:
                break
        counts = {name: int(getattr(item, name) or 0) for name in ("queued", *OUTCOMES)}
        return RunRecord(
            item.run_id,
            item.trigger,
            json.loads(item.period),
            item.state,
            counts,
            item.started_at,
            item.updated_at,
            failures,
            bool(item.dry_run),
        )

    def daily_heartbeat(self, now: datetime) -> datetime | None:
        """Records a scheduled daily run; returns when the previous one ran (None before the first)."""
        try:
            previous: datetime | None = RunItem.get(DAILY_HEARTBEAT, consistent_read=True).updated_at
        except RunItem.DoesNotExist:
            previous = None
        RunItem(
            DAILY_HEARTBEAT,
            trigger="schedule",
            period="{}",
            state="heartbeat",
            started_at=previous or now,
            updated_at=now,
        ).save()
        return previous
