"""Invoicing a month: a run queues one job per account; a job turns SolusVM usage into one invoice.

Exactly once, whatever fails: the invoice, its number and the run's count are one DynamoDB transaction
keyed by (client, period); the invoice email is sent under a lease and marked sent. A job can be
delivered twice, killed between any two steps, or run by two overlapping runs: it ends with one invoice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from postpay.adapters.billing_store import AlreadyBilled, BillingStore, OutcomeRecorded, RunRecord
from postpay.adapters.params import Pricing
from postpay.billing import money
from postpay.billing.periods import Period, local_date
from postpay.clock import Clock
from postpay.config import Settings
from postpay.models import Account, Invoice, InvoiceLine, InvoiceStatus
from postpay.observability import logger, metrics

if TYPE_CHECKING:
    from postpay.adapters.dynamo import DynamoStore
    from postpay.services.enrollment import Mailer

# Longer than one attempt to send an email; shorter than the queue's visibility timeout, so a redelivered
# job after a crash finds the lease expired and sends the email.
EMAIL_LEASE = timedelta(minutes=5)


class Usage(Protocol):
    def usage(self, user_id: int, date_from: date, date_to: date) -> dict: ...


class Queue(Protocol):
    def send_all(self, messages: list[dict[str, Any]]) -> int: ...


class EmailPending(Exception):
    """The invoice exists but its email is not confirmed sent yet: the job must be retried."""


class UsageError(Exception):
    """SolusVM's usage answer does not follow the contract; retrying will not help."""


@dataclass(frozen=True)
class Job:
    run_id: str
    client_id: int
    email: str
    solus_user_id: int
    period: Period

    def message(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "clientId": self.client_id,
            "email": self.email,
            "solusUserId": self.solus_user_id,
            "period": self.period.as_dict(),
        }

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> Job:
        return cls(
            body["runId"],
            int(body["clientId"]),
            body["email"],
            int(body["solusUserId"]),
            Period.from_dict(body["period"]),
        )


def invoice_lines(usage: dict, pricing: Pricing) -> list[InvoiceLine]:
    """One line per server with tokens > 0 (deleted servers included). SolusVM's tokens are the authority."""
    try:
        servers = usage["servers"]
        lines = []
        for server in servers:
            tokens = server["tokens"]
            if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
                raise UsageError(
                    f"server {server.get('id')}: tokens must be a non-negative integer, got {tokens!r}"
                )
            if tokens == 0:
                continue
            lines.append(
                InvoiceLine(
                    server_id=int(server["id"]),
                    name=str(server.get("name") or f"server {server['id']}"),
                    plan=str((server.get("plan") or {}).get("name") or ""),
                    hours=int(server.get("hours") or 0),
                    tokens=tokens,
                    unit_price=pricing.token_price,
                    amount=money.line_amount(tokens, pricing.token_price, pricing.currency),
                    deleted=bool(server.get("is_deleted")),
                )
            )
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"usage answer does not follow the contract: {error!r}") from error
    total_tokens = usage.get("total_tokens")
    if isinstance(total_tokens, int) and total_tokens != sum(s["tokens"] for s in servers):
        raise UsageError(f"total_tokens {total_tokens} is not the sum of the servers' tokens")
    return lines


class Invoicing:
    def __init__(
        self,
        *,
        settings: Settings,
        accounts: DynamoStore,
        billing: BillingStore,
        solus: Usage,
        mailer: Mailer,
        clock: Clock,
        pricing: Callable[[], Pricing],
        queue: Queue | None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.billing = billing
        self.solus = solus
        self.mailer = mailer
        self.clock = clock
        self.pricing = pricing
        self.queue = queue

    # the run ---------------------------------------------------------------------------------------

    def accounts_to_bill(self, period: Period) -> list[Account]:
        return [a for a in self.accounts.enrolled_before(period.ends_at()) if a.solus_user_id is not None]

    def start(self, period: Period, *, trigger: str) -> RunRecord:
        """Creates the run and queues one job per account. A scheduled run has one id per period, so a
        duplicate scheduled event finds it and only re-queues if the first one died while queuing."""
        now = self.clock.now()
        run_id = (
            f"scheduled-{period.key}"
            if trigger == "schedule"
            else f"manual-{period.key}-{uuid.uuid4().hex[:8]}"
        )
        if not self.billing.start_run(run_id, trigger=trigger, period=period.as_dict(), now=now):
            existing = self.billing.run(run_id)
            if existing is not None and existing.state == "queued":
                logger.info("run already queued", extra={"run_id": run_id})
                return existing
        accounts = self.accounts_to_bill(period)
        assert self.queue is not None, "INVOICE_QUEUE_URL is not set"
        jobs = [Job(run_id, a.client_id, a.email, a.solus_user_id or 0, period).message() for a in accounts]
        self.queue.send_all(jobs)
        self.billing.finish_queuing(run_id, len(jobs), self.clock.now())
        logger.info("run queued", extra={"run_id": run_id, "period": period.key, "accounts": len(jobs)})
        record = self.billing.run(run_id)
        assert record is not None
        return record

    def dry_run(self, period: Period) -> dict[str, Any]:
        """What the run would invoice, computed from SolusVM now; writes and sends nothing."""
        pricing = self.pricing()
        accounts: list[dict[str, Any]] = []
        for account in self.accounts_to_bill(period):
            entry: dict[str, Any] = {"clientId": account.client_id, "email": account.email}
            already = self.billing.billed(account.client_id, period.key)
            if already is not None:
                entry["alreadyBilled"] = already[0]
            try:
                usage = self.solus.usage(account.solus_user_id or 0, period.start, period.end)
                lines = invoice_lines(usage.get("data") or {}, pricing)
            except Exception as error:  # a dry run reports every account, failing ones included
                entry["error"] = str(error)
                accounts.append(entry)
                continue
            entry["lines"] = [
                {
                    "server": ln.name,
                    "plan": ln.plan,
                    "hours": ln.hours,
                    "tokens": ln.tokens,
                    "amount": str(ln.amount),
                }
                for ln in lines
            ]
            entry["total"] = str(money.total([ln.amount for ln in lines], pricing.currency))
            accounts.append(entry)
        return {
            "dryRun": True,
            "period": period.as_dict(),
            "currency": pricing.currency,
            "tokenPrice": str(pricing.token_price),
            "accounts": accounts,
            "wouldInvoice": sum(1 for a in accounts if a.get("lines") and "alreadyBilled" not in a),
        }

    # one job ---------------------------------------------------------------------------------------

    def process(self, job: Job, *, final_attempt: bool) -> str:
        """Invoices one account for one period; returns the outcome. Transient failures raise (the queue
        retries); on the final attempt the failure is recorded on the run with its reason."""
        try:
            return self._process(job)
        except Exception as error:
            if final_attempt:
                self.billing.record_outcome(
                    job.run_id,
                    job.client_id,
                    "failed",
                    self.clock.now(),
                    reason=f"{type(error).__name__}: {error}"[:500],
                )
                metrics.add_metric(name="InvoiceFailures", unit="Count", value=1)
            raise

    def _process(self, job: Job) -> str:
        now = self.clock.now()
        answer = self.solus.usage(job.solus_user_id, job.period.start, job.period.end)
        usage = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(usage, dict):
            raise UsageError("usage answer has no data object")
        pricing = self.pricing()
        lines = invoice_lines(usage, pricing)
        raw = json.dumps(usage, sort_keys=True)
        if not lines:
            try:
                self.billing.record_nothing(
                    client_id=job.client_id,
                    email=job.email,
                    period_key=job.period.key,
                    usage=raw,
                    run_id=job.run_id,
                    now=now,
                )
                return "nothing_to_bill"
            except AlreadyBilled:
                return self._already(job)
            except OutcomeRecorded:
                return "nothing_to_bill"
        issued_on = local_date(now, self.settings.billing_timezone)

        def build(number: int) -> Invoice:
            return Invoice(
                number=self.settings.invoice_number_format.format(number=number),
                client_id=job.client_id,
                email=job.email,
                solus_user_id=job.solus_user_id,
                period_start=job.period.start,
                period_end=job.period.end,
                timezone=job.period.timezone,
                currency=pricing.currency,
                token_price=pricing.token_price,
                lines=tuple(lines),
                total=money.total([ln.amount for ln in lines], pricing.currency),
                status=InvoiceStatus.UNPAID,
                issued_on=issued_on,
                due_on=issued_on + timedelta(days=self.settings.due_days),
                usage=raw,
                run_id=job.run_id,
            )

        try:
            invoice = self.billing.issue(build, run_id=job.run_id, now=now, email_lease=EMAIL_LEASE)
        except AlreadyBilled:
            return self._already(job)
        except OutcomeRecorded:  # this run already issued it: a redelivery after a crash
            return self._already(job)
        logger.info(
            "invoice issued",
            extra={
                "run_id": job.run_id,
                "client_id": job.client_id,
                "invoice": invoice.number,
                "total": str(invoice.total),
            },
        )
        metrics.add_metric(name="InvoicesIssued", unit="Count", value=1)
        metrics.add_metric(name=f"AmountBilled{invoice.currency}", unit="None", value=float(invoice.total))
        self._email(invoice, claimed=True)
        return "invoiced"

    def _already(self, job: Job) -> str:
        """The (client, period) was billed before (another run, or this one before a crash)."""
        billed = self.billing.billed(job.client_id, job.period.key)
        assert billed is not None
        outcome, invoice = billed
        if invoice is not None:
            if invoice.run_id != job.run_id:
                self.billing.record_outcome(
                    job.run_id, job.client_id, "already_invoiced", self.clock.now(), number=invoice.number
                )
            self._email(invoice, claimed=False)
            return "invoiced" if invoice.run_id == job.run_id else "already_invoiced"
        if outcome == "nothing_to_bill":
            self.billing.record_outcome(job.run_id, job.client_id, "nothing_to_bill", self.clock.now())
        return outcome

    def _email(self, invoice: Invoice, *, claimed: bool) -> None:
        """Sends the invoice email once: under the lease written with the invoice, or one claimed now."""
        now = self.clock.now()
        if not claimed:
            state = self.billing.claim_email(invoice, now, EMAIL_LEASE)
            if state == "sent":
                return
            if state == "leased":
                # Another attempt may be sending it right now. Retry later rather than finish: if that
                # attempt died before sending, the email goes out once its lease has expired.
                raise EmailPending(invoice.number)
        message_id = self.mailer.send(
            invoice.email,
            "invoice",
            invoice=invoice,
            lines=invoice.lines,
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
        )
        self.billing.mark_emailed(invoice, message_id, self.clock.now())
