"""Invoicing a month: a run queues one job per account; a job turns SolusVM usage into one invoice.

Exactly once, whatever fails: the invoice, its number and the run's count are one DynamoDB transaction
keyed by (client, period); the invoice email is sent under a lease and marked sent. A job can be
delivered twice, killed between any two steps, or run by two overlapping runs: it ends with one invoice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from postpay import limits, money
from postpay.billing.pdf import invoice_pdf
from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import AlreadyBilled, OutcomeRecorded
from postpay.models import (
    NO_PROFILE,
    Account,
    AccountStatus,
    Buyer,
    CarriedBalance,
    Invoice,
    InvoiceLine,
    InvoiceProfile,
    InvoiceStatus,
    Pricing,
    RunRecord,
    ToIssue,
    reverse_charge_applies,
)
from postpay.observability import logger, metrics
from postpay.payments import Card, carries_forward, pay_online_url
from postpay.periods import Period, local_date

if TYPE_CHECKING:
    from postpay.ports import AccountStore, Dispatcher, InvoiceStore, Mailer, Queue, SolusVM

# Longer than a worst-case batch takes from its transaction to its last email (each job's card charge comes
# between two emails), indeed than the worker's whole timeout; shorter than the queue's visibility timeout, so
# a redelivered job after a crash finds the lease expired and sends the email.
EMAIL_LEASE = timedelta(minutes=20)


class EmailPending(Exception):
    """The invoice exists but its email is not confirmed sent yet: the job must be retried."""


class UsageError(Exception):
    """SolusVM's usage answer does not follow the contract; retrying will not help (the job fails at once)."""


class UsageMismatch(UsageError):
    """A field of the usage answer is not what was asked, or not consistent with the rest of the answer."""

    def __init__(self, field: str, expected: str, got: str) -> None:
        super().__init__(f"usage {field}: expected {expected}, got {got}")
        self.field = field
        self.expected = expected
        self.got = got


class RebillRefused(Exception):
    """The operator's re-bill is refused; the message says why. Nothing was written."""


class OutOfTime(Exception):
    """Too little time is left in this invocation to finish a job: it goes back to the queue untouched."""


class AttemptsUsed(Exception):
    """The job's last attempt died without an outcome; it is now recorded as failed and dead-lettered."""


# The reason a job's run shows when its last attempt timed out or stopped before it could say why.
LAST_ATTEMPT_DIED = "its last attempt did not finish (the worker timed out or stopped, or had no time left)"


@dataclass
class Prepared:
    """One job of a batch after the batch's shared work: what its ``finish`` has left to do."""

    job: Job
    outcome: str | None = None  # "invoiced" / "nothing_to_bill" once written
    invoice: Invoice | None = None  # issued by this attempt: its email is leased to it
    already: bool = False  # billed before (another run, or this one before a crash)
    error: Exception | None = None  # raised by finish(): the queue retries, or the job fails at once
    # the batch's one read of its clients' cards on file (Stripe configured): False = none, so neither the
    # invoice email nor the automatic charge reads it again; None = not read (each reads it, as a lone job)
    has_card: bool | None = None
    email: Composing | None = None  # its invoice email, composed while the batch's earlier emails are sent
    # its email's "sent" mark, written while the next email is sent (``Invoicing.settle`` waits for it)
    marked: Future[None] | None = None
    final_attempt: bool = False


@dataclass(frozen=True)
class Composing:
    """An invoice email being composed ahead (its PDF rendered, its MIME encoded), for the day it is dated
    (its ``today``) and the pay link it carries."""

    today: date
    pay_url: str | None
    message: Future[Any]
    invoice: Invoice | None = None  # the invoice it was composed for
    has_card: bool | None = None


@dataclass(frozen=True)
class Job:
    run_id: str
    client_id: int
    email: str
    solus_user_id: int
    period: Period
    # The operator's re-bill: may replace the period's nothing-to-bill record (never an invoice).
    rebill: bool = False
    dry_run: bool = False  # a preview: record what would be invoiced, write and send nothing else

    def message(self) -> dict[str, Any]:
        message = {
            "runId": self.run_id,
            "clientId": self.client_id,
            "email": self.email,
            "solusUserId": self.solus_user_id,
            "period": self.period.as_dict(),
        }
        if self.rebill:
            message["rebill"] = True
        if self.dry_run:
            message["dryRun"] = True
        return message

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> Job:
        return cls(
            body["runId"],
            int(body["clientId"]),
            body["email"],
            int(body["solusUserId"]),
            Period.from_dict(body["period"]),
            rebill=body.get("rebill") is True,
            dry_run=body.get("dryRun") is True,
        )


_ABSENT = object()
# SolusVM's integers are 64-bit: a larger token count is no meter reading, and pricing it would overflow the
# 28 digits Decimal keeps exact (the amount is rounded silently, or fails as InvalidOperation and is retried).
_MAX_TOKENS = 2**63 - 1


def _shown(value: object) -> str:
    return "nothing (the field is absent)" if value is _ABSENT else repr(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_usage(answer: object, *, user_id: int, period: Period) -> dict:
    """The usage answer's ``data``, once it is the answer to the question asked and consistent in itself.

    Asked for one SolusVM user and one period, the answer must name that user and exactly those dates: a
    proxy, a cache or a SolusVM bug returning another user's or another month's usage must never be invoiced.
    Every field the money depends on is required, even where the reference's example is the only word on it:
    ``user_id``, ``date_from``, ``date_to``, ``total_tokens``, ``servers`` and each server's ``id`` and
    ``tokens``; an absent one is refused like a wrong one. The display fields (``name``, ``plan``, ``hours``,
    ``is_deleted``, ``uuid``) may be absent or null: they change no amount, so the line says "server <id>", no
    plan, 0 hours, not deleted, rather than stopping the invoice; present, ``hours`` and ``is_deleted`` must
    have their types. Raises UsageMismatch naming the field and both values."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        raise UsageError("usage answer has no data object")
    asked = {"user_id": user_id, "date_from": period.start.isoformat(), "date_to": period.end.isoformat()}
    for field, wanted in asked.items():
        got = data.get(field, _ABSENT)
        # type() too: True == 1 and 12.0 == 12 in Python, but neither is the user that was asked for
        if type(got) is not type(wanted) or got != wanted:
            raise UsageMismatch(field, f"{wanted!r} (what was asked)", _shown(got))
    _check_consistent(data)
    return data


def _check_consistent(usage: dict) -> None:
    """Each server's tokens a non-negative integer, server ids unique, total_tokens their exact sum."""
    servers = usage.get("servers", _ABSENT)
    if not isinstance(servers, list):
        raise UsageMismatch("servers", "a list of servers", _shown(servers))
    seen: set[int] = set()
    for index, server in enumerate(servers):
        where = f"servers[{index}]"
        if not isinstance(server, dict):
            raise UsageMismatch(where, "a server object", _shown(server))
        server_id = server.get("id", _ABSENT)
        if not _is_int(server_id):
            raise UsageMismatch(f"{where}.id", "an integer server id", _shown(server_id))
        if server_id in seen:
            raise UsageMismatch(f"{where}.id", "server ids that appear once", f"{server_id!r} a second time")
        seen.add(server_id)  # type: ignore[arg-type]
        tokens = server.get("tokens", _ABSENT)
        if not _is_int(tokens) or not 0 <= tokens <= _MAX_TOKENS:  # type: ignore[operator]
            raise UsageMismatch(
                f"{where}.tokens (server {server_id})",
                "a non-negative integer up to 2**63 - 1",
                _shown(tokens),
            )
        hours = server.get("hours")
        if hours is not None and (not _is_int(hours) or hours < 0):
            raise UsageMismatch(f"{where}.hours (server {server_id})", "a non-negative integer", repr(hours))
        deleted = server.get("is_deleted")
        if deleted is not None and not isinstance(deleted, bool):
            raise UsageMismatch(f"{where}.is_deleted (server {server_id})", "true or false", repr(deleted))
    total = usage.get("total_tokens", _ABSENT)
    expected = sum(server["tokens"] for server in servers)
    if not _is_int(total) or total != expected:
        raise UsageMismatch("total_tokens", f"{expected} (the sum of the servers' tokens)", _shown(total))


def invoice_lines(usage: dict, pricing: Pricing) -> list[InvoiceLine]:
    """One line per server with tokens > 0 (deleted servers included). SolusVM's tokens are the authority."""
    _check_consistent(usage)
    lines = []
    for server in usage["servers"]:
        tokens = server["tokens"]
        if tokens == 0:
            continue
        plan = server.get("plan")
        lines.append(
            InvoiceLine(
                server_id=server["id"],
                name=str(server.get("name") or f"server {server['id']}"),
                plan=str((plan.get("name") if isinstance(plan, dict) else None) or ""),
                hours=server.get("hours") or 0,
                tokens=tokens,
                unit_price=pricing.token_price,
                amount=money.line_amount(tokens, pricing.token_price, pricing.currency),
                deleted=bool(server.get("is_deleted")),
            )
        )
    return lines


def failure_reason(error: Exception) -> str:
    """How a failed job's reason reads, in the run's summary and in the dry run alike."""
    return f"{type(error).__name__}: {error}"[:500]


@dataclass(frozen=True)
class Charges:
    """What the lines come to once the tax rule is applied: the figures an invoice stores."""

    tax_rate: Decimal
    tax_label: str
    tax_inclusive: bool
    reverse_charge: bool
    tax: Decimal
    total: Decimal


def charges(lines: list[InvoiceLine], currency: str, profile: InvoiceProfile, buyer: Buyer | None) -> Charges:
    """Tax on the lines' total (money.with_tax); reverse charge exempts a buyer from another country."""
    rule = profile.tax
    reverse = reverse_charge_applies(rule, profile.seller, buyer)
    lines_total = money.total([ln.amount for ln in lines], currency)
    totals = money.with_tax(
        lines_total, Decimal(0) if reverse else rule.rate, currency, inclusive=rule.inclusive
    )
    return Charges(
        tax_rate=rule.rate,
        tax_label=rule.label,
        tax_inclusive=rule.inclusive,
        reverse_charge=reverse,
        tax=totals.tax,
        total=totals.total,
    )


def buyer_of(account: Account | None, email: str) -> Buyer:
    """The buyer as the account says now: the invoice keeps this copy, whatever the account becomes."""
    if account is None:
        return Buyer(name="", email=email)
    return Buyer(
        name=account.name,
        company=account.company,
        email=account.email,
        address=account.billing_address,
        tax_id=account.tax_id,
    )


class Invoicing:
    def __init__(
        self,
        *,
        settings: Settings,
        accounts: AccountStore,
        billing: InvoiceStore,
        solus: SolusVM,
        mailer: Mailer,
        clock: Clock,
        pricing: Callable[[], Pricing],
        queue: Queue | None,
        profile: Callable[[], InvoiceProfile] = lambda: NO_PROFILE,
        dispatcher: Dispatcher | None = None,
        collect: Callable[[Invoice], object] | None = None,
        card_to_charge: Callable[[Invoice], Card | None] | None = None,
        with_cards: Callable[[list[int]], set[int]] | None = None,
        buyers_with_cards: Callable[[list[str], list[int]], tuple[dict[str, Account], set[int]]]
        | None = None,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.billing = billing
        self.solus = solus
        self.mailer = mailer
        self.clock = clock
        self.pricing = pricing
        self.profile = profile
        self.queue = queue
        self.dispatcher = dispatcher  # None where there is no Lambda (local stack, tests): queue inline
        self._usage_pool: ThreadPoolExecutor | None = None
        self._compose_pool: ThreadPoolExecutor | None = None
        self._mark_pool: ThreadPoolExecutor | None = None
        # charges a new invoice to the card on file (Stripe configured); exactly once by its own claim
        self.collect = collect
        # the card that charge will take the invoice from, for the invoice email to say so
        self.card_to_charge = card_to_charge
        # which of a batch's clients have a card on file, in one read
        self.with_cards = with_cards
        # the batch's buyers and which of them have a card on file, in one read of both tables
        self.buyers_with_cards = buyers_with_cards

    # the run ---------------------------------------------------------------------------------------

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
        return self.queue_run(run_id)

    def request(self, period: Period, *, invoicing_date: date, dry_run: bool) -> tuple[str, bool]:
        """An operator's run, accepted at once: its jobs are queued by an asynchronous invocation, so the
        operator's invoke returns in a second whatever the number of accounts. An identical request within
        the join window (RUN_JOIN_MINUTES) joins that run instead of starting another.
        Returns (run id, joined)."""
        now = self.clock.now()
        kind = "dry" if dry_run else "manual"
        candidate = f"{kind}-{period.key}-{uuid.uuid4().hex[:8]}"
        run_id = self.billing.claim_request(
            f"{invoicing_date.isoformat()}#{kind}",
            candidate,
            now=now,
            window=timedelta(minutes=self.settings.run_join_minutes),
        )
        if run_id != candidate:
            logger.info("an identical request joins the run", extra={"run_id": run_id})
            return run_id, True
        self.billing.start_run(run_id, trigger="operator", period=period.as_dict(), now=now, dry_run=dry_run)
        if self.dispatcher is None:
            self.queue_run(run_id)
        else:
            self.dispatcher.queue_run(run_id)
        return run_id, False

    def queue_run(self, run_id: str) -> RunRecord:
        """Queues one job per account for a run still queuing (again, if a first attempt died)."""
        run = self.billing.run(run_id)
        if run is None:
            raise LookupError(run_id)
        if run.state != "queuing":
            return run
        period = Period.from_dict(run.period)
        assert self.queue is not None, "INVOICE_QUEUE_URL is not set"
        # queued as the accounts are listed: the workers start on the first jobs meanwhile
        jobs = (
            Job(run_id, client_id, email, solus_user_id, period, dry_run=run.dry_run).message()
            for email, client_id, solus_user_id in self.accounts.billable_before(period.ends_at())
        )
        queued = self.queue.send_all(jobs)
        self.billing.finish_queuing(run_id, queued, self.clock.now())
        logger.info("run queued", extra={"run_id": run_id, "period": period.key, "accounts": queued})
        record = self.billing.run(run_id)
        assert record is not None
        return record

    def rebill(self, client_id: int, period: Period) -> RunRecord:
        """The operator bills one client for one period recorded as nothing to bill (SolusVM reported its
        usage late), or never recorded (its job failed). A run of its own with one job on the queue, so
        retries, the email lease and the dead-letter queue work as for any job. Refused (RebillRefused)
        before anything is written when the client is unknown or was enrolled after the period, or the
        period has an invoice that is not void (a voided month is billed again, with a new number); the
        database condition that replaces only a nothing-to-bill record or a void invoice makes duplicates
        bill once."""
        account = next(
            (
                a
                for a in self.accounts.accounts_with_status(AccountStatus.ENROLLED)
                if a.client_id == client_id
            ),
            None,
        )
        if account is None or account.solus_user_id is None:
            raise RebillRefused(f"no enrolled client {client_id}")
        if account.enrolled_at is None or account.enrolled_at >= period.ends_at():
            raise RebillRefused(
                f"client {client_id} was enrolled after {period.label} ended: nothing to bill"
            )
        billed = self.billing.billed(client_id, period.key)
        if billed is not None and billed[1] is not None and billed[1].status is not InvoiceStatus.VOID:
            raise RebillRefused(
                f"client {client_id} already has invoice {billed[1].number} for {period.label}"
                f" ({billed[1].status.value}; void it first to bill the month again)"
            )
        run_id = f"rebill-{period.key}-{client_id}-{uuid.uuid4().hex[:8]}"
        self.billing.start_run(run_id, trigger="rebill", period=period.as_dict(), now=self.clock.now())
        assert self.queue is not None, "INVOICE_QUEUE_URL is not set"
        job = Job(run_id, client_id, account.email, account.solus_user_id, period, rebill=True)
        self.queue.send_all([job.message()])
        self.billing.finish_queuing(run_id, 1, self.clock.now())
        logger.info("re-bill queued", extra={"run_id": run_id, "client_id": client_id, "period": period.key})
        record = self.billing.run(run_id)
        assert record is not None
        return record

    # one batch of jobs ----------------------------------------------------------------------------

    def prepare_batch(
        self, deliveries: dict[str, tuple[Job, int]], *, remaining_ms: int
    ) -> dict[str, Prepared]:
        """A worker's batch (message id -> (job, delivery)) prepared together, as much of it as the time left
        allows for a worst-case batch (postpay.limits.jobs_in_time). Dry runs and deliveries past the last
        attempt are not prepared: ``attempt`` handles them one by one, as it does every job left out here."""
        eligible = [
            key
            for key, (job, delivery) in deliveries.items()
            if not job.dry_run and delivery <= self.settings.invoice_max_attempts
        ]
        chosen = eligible[
            : limits.jobs_in_time(remaining_ms, len(eligible), parallelism=self.settings.usage_parallelism)
        ]
        if not chosen:
            return {}
        prepared = self.prepare([deliveries[key][0] for key in chosen])
        return dict(zip(chosen, prepared, strict=True))

    def attempt(self, job: Job, *, delivery: int, remaining_ms: int, prepared: Prepared | None = None) -> str:
        """One delivery of a job from the queue (``delivery`` is SQS's ApproximateReceiveCount).

        Deliveries 1..INVOICE_MAX_ATTEMPTS process the job, each only if the invocation has time for a
        worst-case job (postpay.limits); one more delivery means the last attempt died without recording
        an outcome: it is recorded as failed, and the message goes on to the dead-letter queue. A job
        ``prepared`` with its batch (whose time was checked for the whole batch) only finishes here."""
        max_attempts = self.settings.invoice_max_attempts
        if delivery > max_attempts:
            self.abandon(job)
        if prepared is not None:
            return self.finish(prepared, final_attempt=delivery >= max_attempts)
        if remaining_ms < limits.START_JOB_MIN_REMAINING_MS:
            raise OutOfTime(f"{remaining_ms} ms left, a job may need {limits.START_JOB_MIN_REMAINING_MS}")
        return self.process(job, final_attempt=delivery >= max_attempts)

    def abandon(self, job: Job) -> NoReturn:
        """Records a job whose attempts are all used and whose last one left no outcome, then raises."""
        if self.billing.outcome_of(job.run_id, job.client_id) is None:
            self.billing.record_outcome(
                job.run_id, job.client_id, "failed", self.clock.now(), reason=LAST_ATTEMPT_DIED
            )
            metrics.add_metric(name="InvoiceFailures", unit="Count", value=1)
        logger.warning(
            "invoicing job dead-lettered", extra={"run_id": job.run_id, "client_id": job.client_id}
        )
        raise AttemptsUsed(f"client {job.client_id}: {LAST_ATTEMPT_DIED}")

    def process(self, job: Job, *, final_attempt: bool) -> str:
        """Invoices one account for one period (a batch of one); returns the outcome."""
        return self.finish(self.prepare([job])[0], final_attempt=final_attempt)

    def prepare(self, jobs: list[Job]) -> list[Prepared]:
        """The batch's work that is cheaper together: usage fetched for every job at once (at most
        ``usage_parallelism`` calls in flight), then every invoice and nothing-to-bill record written in as
        few transactions as allowed. What each job still has to do (its email) is left to ``finish``; a job's
        failure is kept for its ``finish`` to raise, so the queue retries that job alone. A dry run's job is
        left whole to ``finish`` (its preview writes only its outcome)."""
        prepared = [Prepared(job) for job in jobs]
        billing = [item for item in prepared if not item.job.dry_run]
        now = self.clock.now()
        answers = self._usages([item.job for item in billing])
        checked: list[tuple[Prepared, dict, list[InvoiceLine], Pricing]] = []
        for item, answer in zip(billing, answers, strict=True):
            try:
                if isinstance(answer, Exception):
                    raise answer
                usage = check_usage(answer, user_id=item.job.solus_user_id, period=item.job.period)
                pricing = self.pricing()
                checked.append((item, usage, invoice_lines(usage, pricing), pricing))
            except Exception as error:  # kept for this job's finish(): the usage refused, SolusVM down
                item.error = error
        billable = [item.job for item, _, lines, _ in checked if lines]
        accounts: dict[str, Account] = {}
        cards: set[int] | None = None
        try:
            # the buyers of the batch's invoices (and who of them has a card on file), in one read
            if billable and self.buyers_with_cards is not None:
                accounts, cards = self.buyers_with_cards(
                    [job.email for job in billable], [job.client_id for job in billable]
                )
            elif billable:
                accounts = self.accounts.get_accounts([job.email for job in billable])
        except Exception as error:  # nothing was written: every job of it is retried
            for item, *_ in checked:
                item.error = error
            return prepared
        entries: list[ToIssue] = []
        waiting: list[Prepared] = []
        for item, usage, lines, pricing in checked:
            try:
                entries.append(
                    self._entry(item.job, usage, lines, pricing, now, accounts.get(item.job.email))
                )
                waiting.append(item)
            except Exception as error:  # the invoice profile unreadable: kept for this job's finish()
                item.error = error
        if not entries:
            return prepared
        try:
            results = self.billing.issue_batch(
                entries, now=now, email_lease=EMAIL_LEASE, sending=self._first_email_ahead(waiting, cards)
            )
        except Exception as error:  # nothing of the transaction was written: every job of it is retried
            self.discard(waiting)
            for item in waiting:
                item.error, item.email = error, None
            return prepared
        for item, result in zip(waiting, results, strict=True):
            if isinstance(result, AlreadyBilled | OutcomeRecorded):
                item.already = True  # another run billed it, or this run before a crash
            elif result is None:
                item.outcome = "nothing_to_bill"
            else:
                item.invoice, item.outcome = result, "invoiced"
        issued = [item for item in waiting if item.invoice is not None]
        self._read_cards(issued, cards)
        self._compose_ahead(issued)
        not_issued = [item for item in waiting if item.invoice is None]
        self.discard(not_issued)  # an email composed ahead for an invoice the transaction did not issue
        for item in not_issued:
            item.email = None
        return prepared

    def _first_email_ahead(
        self, waiting: list[Prepared], cards: set[int] | None
    ) -> Callable[[dict[int, Invoice]], None] | None:
        """What composes the batch's first invoice email while its transaction is on the network, as that
        transaction issues it: the first send then waits for less of it (its PDF, its MIME) once the
        invoices are out. ``_compose_ahead`` keeps it only if that invoice is the one issued (the
        transaction was not cancelled meanwhile), else drops it. Only where the batch composes ahead (two
        invoices or more) and has read its cards on file (when there are cards)."""
        if self.with_cards is not None and cards is None:
            return None

        def sending(invoices: dict[int, Invoice]) -> None:
            if len(invoices) < 2:
                return
            index = min(invoices)
            item = waiting[index]
            # as ``_read_cards`` will settle it (None without card payments), or the email is composed again
            has_card = None if self.with_cards is None or cards is None else item.job.client_id in cards
            item.email = self._composing(invoices[index], has_card=has_card)

        return sending

    def _composing(self, invoice: Invoice, *, has_card: bool | None) -> Composing:
        """The invoice's email, submitted to the batch's compose thread."""
        if self._compose_pool is None:
            self._compose_pool = ThreadPoolExecutor(1, thread_name_prefix="compose")
        today = local_date(self.clock.now(), self.settings.billing_timezone)
        pay_url = pay_online_url(self.settings, invoice)
        message = self._compose_pool.submit(
            self._invoice_email, invoice, has_card=has_card, today=today, pay_url=pay_url
        )
        return Composing(today, pay_url, message, invoice=invoice, has_card=has_card)

    def _compose_ahead(self, issued: list[Prepared]) -> None:
        """Starts composing the batch's invoice emails (the PDF, the templates, the MIME: most of the
        worker's CPU), one after another in one thread, while the jobs send them one after another: each
        send waits only for its own message, and the next ones are made while the earlier ones are on the
        network (SES, the "sent" mark). A lone invoice's email is composed when it is sent, as before. A
        message that fails to compose fails its job's email, which the queue retries, as an inline one
        would."""
        ahead = len(issued) >= 2
        for item in issued:
            assert item.invoice is not None
            early = item.email  # the first one's, composed while the transaction was on the network
            if early is not None:
                if ahead and (early.invoice, early.has_card) == (item.invoice, item.has_card):
                    continue
                early.message.cancel()
                item.email = None
            if ahead:
                item.email = self._composing(item.invoice, has_card=item.has_card)

    def settle(self, finished: Mapping[str, Prepared]) -> list[str]:
        """Waits for the "sent" marks of the batch's emails still being written (``_email``); returns the
        jobs whose mark failed, for the queue to retry each (on its final attempt it is recorded failed, as
        ``finish`` records any failure). Called before the batch answers, also when it failed half-way, so
        no mark is left running when Lambda freezes the environment."""
        failed: list[str] = []
        for key, item in finished.items():
            if item.marked is None:
                continue
            try:
                item.marked.result()
            except Exception as error:
                logger.warning(
                    "invoice email sent, its sent mark failed: retried under its lease",
                    extra={"run_id": item.job.run_id, "client_id": item.job.client_id},
                    exc_info=True,
                )
                failed.append(key)
                if item.final_attempt:
                    try:
                        self._failed(item.job, error)
                    except Exception:  # its next delivery records it (``abandon``): wait for the rest
                        logger.warning("a failed mark's outcome was not recorded", exc_info=True)
        return failed

    def discard(self, leftovers: Iterable[Prepared]) -> None:
        """Prepared jobs that will not finish in this invocation: their emails are not composed for nothing
        (a composing one ends in a moment), so no thread is at work when Lambda freezes the environment."""
        for item in leftovers:
            if item.email is not None:
                item.email.message.cancel()

    def _read_cards(self, issued: list[Prepared], cards: set[int] | None = None) -> None:
        """One read of the cards on file of the batch's new invoices' clients, instead of two reads per
        invoice (its email's and its charge's), unless the batch read them with its buyers (``cards``). Who
        has no card is settled for this attempt: a card saved in the seconds before its email is sent is not
        charged automatically, and the email offers Pay now, as it says. A card found is read again by the
        charge itself. A failed read leaves it to each job."""
        if self.with_cards is None or not issued:
            return
        if cards is None:
            try:
                cards = self.with_cards([item.job.client_id for item in issued])
            except Exception:  # each job reads its own card, as without the batch
                logger.warning("the batch's cards on file could not be read", exc_info=True)
                return
        for item in issued:
            item.has_card = item.job.client_id in cards

    def finish(self, prepared: Prepared, *, final_attempt: bool) -> str:
        """Ends one job of a prepared batch; returns its outcome. Transient failures raise (the queue
        retries); on the final attempt the failure is recorded on the run with its reason."""
        job = prepared.job
        prepared.final_attempt = final_attempt
        try:
            if job.dry_run:
                return self._preview(job)
            if prepared.error is not None:
                raise prepared.error
            if prepared.already:
                return self._already(job)
            if prepared.invoice is not None:
                self._issued(prepared.invoice, has_card=prepared.has_card, email=prepared.email, job=prepared)
            assert prepared.outcome is not None
            return prepared.outcome
        except UsageError as error:
            billed = self.billing.billed(job.client_id, job.period.key)
            settled = (
                billed is not None and billed[1] is not None and billed[1].status is not InvoiceStatus.VOID
            )
            if billed is not None and (settled or not job.rebill):
                # The month is settled (an invoice, or nothing to bill and this is no re-bill): the answer
                # would compute nothing, so the job ends as on any re-run, and a redelivery after a crash
                # still sends its invoice's email.
                logger.warning("usage answer refused for a settled month", extra={"reason": str(error)})
                return self._already(job)
            # The answer is wrong, not late: asking again gets the same answer, so the job ends now, failed,
            # with nothing written but its outcome (no invoice, no nothing-to-bill record, no email).
            logger.warning("usage answer refused", extra={"run_id": job.run_id, "reason": str(error)})
            self._failed(job, error)
            return "failed"
        except Exception as error:
            if final_attempt:
                self._failed(job, error)
            raise

    def _usages(self, jobs: list[Job]) -> list[dict | Exception]:
        """Each job's usage answer (or why there is none), asked in parallel within the deployment budget."""

        def ask(job: Job) -> dict | Exception:
            try:
                return self.solus.usage(job.solus_user_id, job.period.start, job.period.end)
            except Exception as error:  # one job's failure, not the batch's
                return error

        if len(jobs) <= 1 or self.settings.usage_parallelism <= 1:
            return [ask(job) for job in jobs]
        if self._usage_pool is None:
            # Kept for the life of the environment: its threads keep their SolusVM connections warm.
            self._usage_pool = ThreadPoolExecutor(self.settings.usage_parallelism, thread_name_prefix="usage")
        return list(self._usage_pool.map(ask, jobs))

    def _failed(self, job: Job, error: Exception) -> None:
        recorded = self.billing.record_outcome(
            job.run_id, job.client_id, "failed", self.clock.now(), reason=failure_reason(error)
        )
        if not recorded and self.billing.outcome_of(job.run_id, job.client_id) is None:
            raise RuntimeError("the failed outcome could not be recorded") from error  # the queue retries
        metrics.add_metric(name="InvoiceFailures", unit="Count", value=1)

    def _preview(self, job: Job) -> str:
        """A dry run's job: records what the account's invoice would be; writes nothing else."""
        now = self.clock.now()
        billed = self.billing.billed(job.client_id, job.period.key)
        if billed is not None:
            outcome, invoice = billed
            number = invoice.number if invoice is not None else None
            outcome = "already_invoiced" if invoice is not None else outcome
            self.billing.record_outcome(job.run_id, job.client_id, outcome, now, number=number)
            return outcome
        answer = self.solus.usage(job.solus_user_id, job.period.start, job.period.end)
        usage = check_usage(answer, user_id=job.solus_user_id, period=job.period)
        pricing = self.pricing()
        lines = invoice_lines(usage, pricing)
        if not lines:
            self.billing.record_outcome(job.run_id, job.client_id, "nothing_to_bill", now)
            return "nothing_to_bill"
        detail = {
            "email": job.email,
            "currency": pricing.currency,
            "tokenPrice": str(pricing.token_price),
            "lines": [
                {
                    "server": ln.name,
                    "plan": ln.plan,
                    "hours": ln.hours,
                    "tokens": ln.tokens,
                    "amount": str(ln.amount),
                }
                for ln in lines
            ],
            "total": str(money.total([ln.amount for ln in lines], pricing.currency)),
        }
        self.billing.record_outcome(
            job.run_id, job.client_id, "would_invoice", now, detail=json.dumps(detail)
        )
        return "would_invoice"

    def _entry(
        self,
        job: Job,
        usage: dict,
        lines: list[InvoiceLine],
        pricing: Pricing,
        now: datetime,
        account: Account | None,
    ) -> ToIssue:
        """The job's invoice (built for whatever number the transaction gives it), or its nothing-to-bill
        record, from its checked usage and its lines."""
        raw = json.dumps(usage, sort_keys=True)
        entry = ToIssue(
            job.client_id,
            job.period.key,
            job.run_id,
            job.email,
            raw,
            replace_nothing=job.rebill,
            currency=pricing.currency,
        )
        if lines:
            # Seller, buyer and tax as they are now: the invoice keeps them, whatever changes later.
            profile = self.profile()
            buyer = buyer_of(account, job.email)
            charged = charges(lines, pricing.currency, profile, buyer)
            entry.invoice_for = partial(
                self.build_invoice, job, lines, pricing, raw, now, profile, buyer, charged
            )
        return entry

    def build_invoice(
        self,
        job: Job,
        lines: list[InvoiceLine],
        pricing: Pricing,
        raw: str,
        now: datetime,
        profile: InvoiceProfile,
        buyer: Buyer,
        charged: Charges,
        number: int,
        carried: tuple[CarriedBalance, ...] = (),
    ) -> Invoice:
        """One invoice as issued, for the number its transaction allocates and the earlier invoices'
        balances it takes (each taxed on its own invoice: added after tax, never taxed again). Below the
        gateway's minimum, with the operator's carry-over on, it is issued carried itself (payments)."""
        issued_on = local_date(now, self.settings.billing_timezone)
        total = charged.total + sum((c.amount for c in carried), Decimal(0))
        carry = carries_forward(self.settings, total, pricing.currency)
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
            total=total,
            status=InvoiceStatus.CARRIED if carry else InvoiceStatus.UNPAID,
            issued_on=issued_on,
            due_on=issued_on + timedelta(days=self.settings.due_days),
            usage=raw,
            run_id=job.run_id,
            seller=profile.seller,
            buyer=buyer,
            tax_rate=charged.tax_rate,
            tax_label=charged.tax_label,
            tax_inclusive=charged.tax_inclusive,
            reverse_charge=charged.reverse_charge,
            tax=charged.tax,
            payment_instructions=profile.payment_instructions,
            carried_in=carried,
        )

    def _issued(
        self,
        invoice: Invoice,
        *,
        has_card: bool | None = None,
        email: Composing | None = None,
        job: Prepared | None = None,
    ) -> None:
        logger.info(
            "invoice issued",
            extra={
                "run_id": invoice.run_id,
                "client_id": invoice.client_id,
                "invoice": invoice.number,
                "total": str(invoice.total),
            },
        )
        metrics.add_metric(name="InvoicesIssued", unit="Count", value=1)
        metrics.add_metric(name=f"AmountBilled{invoice.currency}", unit="None", value=float(invoice.total))
        self._email(invoice, claimed=True, has_card=has_card, email=email, job=job)
        if has_card is not False:  # without a card on file the charge has nothing to do
            charges = self.collect is not None and invoice.status is InvoiceStatus.UNPAID
            if job is not None and job.marked is not None and charges:
                marked, job.marked = job.marked, None  # its failure is this job's, here: not settle's
                marked.result()  # the charge after the email and its mark, as for a lone job
            self._collect(invoice)

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
            self._marks_written()  # a copy of a job of this batch: its email's mark may be on its way
            self._email(invoice, claimed=False)
            self._collect(invoice)
            return "invoiced" if invoice.run_id == job.run_id else "already_invoiced"
        if outcome == "nothing_to_bill":
            self.billing.record_outcome(job.run_id, job.client_id, "nothing_to_bill", self.clock.now())
        return outcome

    def _marks_written(self) -> None:
        """Waits for the "sent" marks on their way (``_email``): the mark thread is one, so a no-op submitted
        after them ends after them. A job billed before then finds its email marked, not leased."""
        if self._mark_pool is not None:
            self._mark_pool.submit(lambda: None).result()

    def _collect(self, invoice: Invoice) -> None:
        """The automatic charge, after the invoice email (the client learns of the invoice first). Its own
        claim makes it once; a gateway failure raises and the queue retries the job."""
        if self.collect is not None and invoice.status is InvoiceStatus.UNPAID:
            self.collect(invoice)

    def _email(
        self,
        invoice: Invoice,
        *,
        claimed: bool,
        has_card: bool | None = None,
        email: Composing | None = None,
        job: Prepared | None = None,
    ) -> None:
        """Sends the invoice email once: under the lease written with the invoice, or one claimed now.

        An email composed ahead for a batch (``email`` and its ``job``) is marked sent on another thread
        while the worker sends the batch's next one (the mark is a round trip that needs nothing but the
        message id); ``settle`` waits for the marks before the batch answers, and a job whose mark failed
        is retried as if its send had: the lease holds its email back, as when the mark fails here."""
        now = self.clock.now()
        if not claimed:
            state = self.billing.claim_email(invoice, now, EMAIL_LEASE)
            if state == "sent":
                return
            if state == "leased":
                # Another attempt may be sending it right now. Retry later rather than finish: if that
                # attempt died before sending, the email goes out once its lease has expired.
                raise EmailPending(invoice.number)
        message_id = self.send_invoice_email(invoice, has_card=has_card, email=email)
        if email is None or job is None:
            self.billing.mark_emailed(invoice, message_id, self.clock.now())
            return
        if self._mark_pool is None:
            self._mark_pool = ThreadPoolExecutor(1, thread_name_prefix="mark")
        job.marked = self._mark_pool.submit(self.billing.mark_emailed, invoice, message_id, self.clock.now())

    def send_invoice_email(
        self, invoice: Invoice, *, has_card: bool | None = None, email: Composing | None = None
    ) -> str:
        """Sends the invoice's email (no lease: the caller decides it must go); returns the message id.
        ``has_card=False``: the batch found no card on file, so the email is not told of a charge. ``email``:
        the message composed ahead (``_compose_ahead``), sent if it was made for the same day and pay link."""
        today = local_date(self.clock.now(), self.settings.billing_timezone)
        pay_url = pay_online_url(self.settings, invoice)
        if email is not None and (email.today, email.pay_url) == (today, pay_url):
            message = email.message.result()
        else:
            if email is not None:
                email.message.cancel()  # composed for another day: not sent, and not composed if not begun
            message = self._invoice_email(invoice, has_card=has_card, today=today, pay_url=pay_url)
        return self.mailer.deliver(message)

    def _invoice_email(
        self, invoice: Invoice, *, has_card: bool | None, today: date, pay_url: str | None
    ) -> Any:
        """The invoice email with its PDF, composed (not sent)."""
        # Read as the email is composed (for a batch, ahead of its send by at most the batch's earlier sends,
        # a fraction of a second): the worker sends it before it charges (the client learns of the invoice
        # first), so a card on file is the charge about to be made, and the email says so instead of asking
        # to pay; once an attempt failed, Pay now. The charge reads the card on file again. Without Stripe
        # both are None: as before.
        card = None
        if pay_url and self.card_to_charge is not None and has_card is not False:
            card = self.card_to_charge(invoice)
        pdf = invoice_pdf(invoice, today=today, pay_url=pay_url)
        return self.mailer.compose(
            invoice.email,
            "invoice",
            invoice=invoice,
            lines=invoice.lines,
            today=today,
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
            pay_url=None if card else pay_url,
            card=card,
            paid=self.settings.stripe_enabled and invoice.status is InvoiceStatus.PAID,
            attachments=((f"{invoice.number}.pdf", "application/pdf", pdf),),
        )
