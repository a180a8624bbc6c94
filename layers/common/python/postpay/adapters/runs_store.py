"""DynamoDB for invoicing runs: the run record, its counts, and its per-account outcomes read back.

A run is created once per id (a duplicate scheduled event finds it); an operator's identical requests
within the join window share one run. Outcomes are written with the invoices they count, in the issuing
transactions of ``billing_store``, and here alone when there is no invoice to write (failed, already
invoiced), each with its run's count, once per (run, account).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from postpay.adapters.tables import OutcomeItem, RunItem, conditional_failed, connection
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

    # outcomes, one per (run, account) -----------------------------------------------------------

    def record_outcome(
        self,
        run_id: str,
        client_id: int,
        outcome: str,
        now: datetime,
        *,
        number: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Records this run's outcome for an account once (replacing a "failed" one); False if it had one."""
        replace = outcome != "failed" and self.outcome_of(run_id, client_id) == "failed"
        try:
            with TransactWrite(connection=connection()) as tx:
                self._outcome(
                    tx,
                    run_id,
                    client_id,
                    outcome,
                    now,
                    number=number,
                    reason=reason,
                    detail=detail,
                    replace_failed=replace,
                )
        except TransactWriteError:
            return False
        return True

    def _outcome(
        self,
        tx: TransactWrite,
        run_id: str,
        client_id: int,
        outcome: str,
        now: datetime,
        *,
        number: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        replace_failed: bool = False,
    ) -> None:
        """Once per (run, account); a "failed" outcome may later be replaced when its job is redriven."""
        tx.save(
            OutcomeItem(
                run_id,
                client_id,
                outcome=outcome,
                invoice_number=number,
                reason=reason,
                detail=detail,
                at=now,
            ),
            condition=(OutcomeItem.outcome == "failed")
            if replace_failed
            else OutcomeItem.run_id.does_not_exist(),
        )
        actions = [getattr(RunItem, outcome).add(1), RunItem.updated_at.set(now)]
        if replace_failed:
            actions.append(RunItem.failed.add(-1))
        tx.update(RunItem(run_id), actions=actions, condition=RunItem.run_id.exists())

    def outcome_of(self, run_id: str, client_id: int) -> str | None:
        try:
            return OutcomeItem.get(run_id, client_id, consistent_read=True).outcome
        except OutcomeItem.DoesNotExist:
            return None
