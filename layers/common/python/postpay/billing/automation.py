"""The automation function's logic: the daily schedule and the operator's commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postpay.billing.commands import (
    Daily,
    InvoiceMonth,
    MarkPaid,
    PayloadError,
    QueueRun,
    Rebill,
    RunStatus,
    parse,
)
from postpay.billing.invoicing import RebillRefused
from postpay.clock import Clock
from postpay.config import Settings
from postpay.models import RunRecord
from postpay.observability import logger, metrics
from postpay.periods import local_date, month_before

if TYPE_CHECKING:
    from postpay.billing.invoicing import Invoicing
    from postpay.billing.upkeep import Upkeep
    from postpay.ports import InvoiceStore


PAGE_SIZE = 100  # accounts per runStatus answer, well under Lambda's 6 MB response limit


def run_summary(run: RunRecord) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "trigger": run.trigger,
        "dryRun": run.dry_run,
        "period": run.period,
        "state": run.state,
        "finished": run.finished,
        "queued": run.counts["queued"],
        "wouldInvoice": run.counts["would_invoice"],
        "invoiced": run.counts["invoiced"],
        "alreadyInvoiced": run.counts["already_invoiced"],
        "nothingToBill": run.counts["nothing_to_bill"],
        "failed": run.counts["failed"],
        "failures": {str(k): v for k, v in sorted(run.failures.items())},
        "startedAt": run.started_at.isoformat(),
        "updatedAt": run.updated_at.isoformat(),
        "finishedAt": run.updated_at.isoformat() if run.finished else None,
    }


class Automation:
    def __init__(
        self, *, settings: Settings, invoicing: Invoicing, upkeep: Upkeep, billing: InvoiceStore, clock: Clock
    ) -> None:
        self.settings = settings
        self.invoicing = invoicing
        self.upkeep = upkeep
        self.billing = billing
        self.clock = clock

    def handle(self, event: Any) -> dict[str, Any]:
        command = parse(event, timezone=self.settings.billing_timezone, now=self.clock.now())
        logger.info("automation command", extra={"command": type(command).__name__})
        if isinstance(command, Daily):
            return self.daily(command)
        if isinstance(command, InvoiceMonth):
            invoicing_date = command.invoicing_date or command.period.end
            run_id, joined = self.invoicing.request(
                command.period, invoicing_date=invoicing_date, dry_run=command.dry_run
            )
            run = self.billing.run(run_id)
            summary = run_summary(run) if run is not None else {"runId": run_id, "state": "starting"}
            return {**summary, "joined": joined}
        if isinstance(command, QueueRun):
            try:
                return run_summary(self.invoicing.queue_run(command.run_id))
            except LookupError as error:
                raise PayloadError(f"no run {command.run_id!r}") from error
        if isinstance(command, RunStatus):
            return self.status(command)
        if isinstance(command, Rebill):
            return self.rebill(command)
        return self.mark_paid(command)

    def status(self, command: RunStatus) -> dict[str, Any]:
        """The run's summary and one page of its accounts' outcomes (a dry run's lines and totals among
        them); ``next`` is the ``after`` of the next page, null on the last."""
        run = self.billing.run(command.run_id)
        if run is None:
            raise PayloadError(f"no run {command.run_id!r}")
        accounts, after = self.billing.outcomes(command.run_id, after=command.after, limit=PAGE_SIZE)
        return {**run_summary(run), "accounts": accounts, "next": after}

    def daily(self, command: Daily) -> dict[str, Any]:
        result: dict[str, Any] = {"date": command.today.isoformat()}
        now = self.clock.now()
        previous = self.billing.daily_heartbeat(now)
        if previous is not None:  # only scheduled runs say this, and not before the first one
            hours = round((now - previous).total_seconds() / 3600, 2)
            metrics.add_metric(name="HoursSinceLastDailyRun", unit="Count", value=hours)
            result["hoursSinceLastDailyRun"] = hours
        if command.today.day == 1:
            period = month_before(command.today, self.settings.billing_timezone)
            result["run"] = run_summary(self.invoicing.start(period, trigger="schedule"))
        result["upkeep"] = self.upkeep.run(command.today).as_dict()
        return result

    def rebill(self, command: Rebill) -> dict[str, Any]:
        try:
            run = self.invoicing.rebill(command.client_id, command.period)
        except RebillRefused as error:
            raise PayloadError(f"rebill refused: {error}") from error
        return {**run_summary(run), "client": command.client_id}

    def mark_paid(self, command: MarkPaid) -> dict[str, Any]:
        now = self.clock.now()
        try:
            invoice = self.billing.mark_paid(command.number, command.reference, now)
        except LookupError as error:
            raise PayloadError(f"no invoice {command.number!r}") from error
        except ValueError as error:
            raise PayloadError(str(error)) from error
        logger.info("invoice paid", extra={"invoice": invoice.number, "client_id": invoice.client_id})
        reactivated = self.upkeep.lift_if_clear(
            invoice.email, local_date(now, self.settings.billing_timezone)
        )
        return {
            "invoice": invoice.number,
            "status": invoice.status.value,
            "reference": command.reference,
            "paidAt": now.isoformat(),
            "reactivated": reactivated,
        }
