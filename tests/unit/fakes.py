"""In-memory fakes of the ports (postpay.ports), with the stores' conditions: what the logic relies on.

Each fake keeps the rule its DynamoDB store enforces with a condition or a transaction (a link works once,
an account is created once, the provisioning lock is held by one caller), so a unit test of a service
exercises the same outcomes the integration tests see through moto, in milliseconds. The transactions'
real semantics stay tested against moto in tests/integration.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from postpay.errors import (
    AccountExists,
    AlreadyBilled,
    OutcomeRecorded,
    SolusUnavailable,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from postpay.models import (
    OUTCOMES,
    Acceptance,
    Account,
    AccountStatus,
    CarriedBalance,
    Invoice,
    InvoiceStatus,
    RunRecord,
    Session,
    SignupAttempt,
    SignupForm,
    SolusUser,
    ToIssue,
    TokenRecord,
)
from postpay.payments import Card, ChargeResult, PaymentEvent


class FixedClock:
    def __init__(self, moment: datetime = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


# ----------------------------------------------------------------------------------------------- stores


@dataclass
class _Token:
    purpose: str
    email: str
    expires_at: datetime
    used_at: datetime | None = None
    used_by: str | None = None
    attempt: SignupAttempt | None = None  # a sign-up attempt's details, dropped when its link is used


class FakeAccounts:
    """postpay.ports.AccountStore in memory."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, _Token] = {}
        self.reset_tokens: dict[str, str] = {}  # email -> the newest reset link's hash
        self.accepted: list[Acceptance] = []
        self.locks: dict[str, datetime] = {}
        self.suspended_at: dict[str, datetime] = {}

    def add(self, account: Account) -> Account:
        self.accounts[account.email] = account
        return account

    def _update(self, email: str, **changes: Any) -> None:
        self.accounts[email] = dataclasses.replace(self.accounts[email], **changes)

    def get_account(self, email: str) -> Account | None:
        return self.accounts.get(email)

    def get_accounts(self, emails: list[str]) -> dict[str, Account]:
        return {email: self.accounts[email] for email in emails if email in self.accounts}

    def account_by_client(self, client_id: int) -> Account | None:
        return next((a for a in self.accounts.values() if a.client_id == client_id), None)

    def accounts_with_status(self, status: AccountStatus) -> Iterator[Account]:
        yield from [a for a in self.accounts.values() if a.status is status]

    def billable_before(self, moment: datetime) -> Iterator[tuple[str, int, int]]:
        yield from [
            (a.email, a.client_id, a.solus_user_id)
            for a in self.accounts.values()
            if a.status is AccountStatus.ENROLLED
            and a.enrolled_at is not None
            and a.enrolled_at < moment
            and a.solus_user_id is not None
        ]

    def expired_pending(self, now: datetime) -> Iterator[Account]:
        return iter(())

    def delete_expired_pending(self, email: str, now: datetime) -> bool:
        return False

    def suspended_accounts(self) -> Iterator[Account]:
        yield from [a for a in self.accounts.values() if a.suspended_for]

    def mark_suspended(self, email: str, invoice_number: str, now: datetime) -> None:
        self._update(email, suspended_for=invoice_number)
        self.suspended_at[email] = now

    def clear_suspension(self, email: str) -> None:
        self._update(email, suspended_for=None)
        self.suspended_at.pop(email, None)

    def create_attempt(
        self, form: SignupForm, *, password_hash: str, token_hash: str, expires: datetime
    ) -> None:
        assert token_hash not in self.tokens, "an attempt never overwrites another"
        attempt = SignupAttempt(
            email=form.email,
            name=form.name,
            company=form.company,
            password_hash=password_hash,
            expires_at=expires,
        )
        self.tokens[token_hash] = _Token("verify", form.email, expires, attempt=attempt)

    def get_attempt(self, token_hash: str) -> SignupAttempt | None:
        token = self.tokens.get(token_hash)
        if token is None or token.purpose != "verify" or token.used_at is not None:
            return None
        return token.attempt

    def delete_expired_tokens(self, now: datetime) -> int:
        expired = [h for h, t in self.tokens.items() if t.expires_at < now]
        abandoned = sum(1 for h in expired if self.tokens[h].attempt is not None)
        for h in expired:
            del self.tokens[h]
        return abandoned

    def get_token(self, token_hash: str, purpose: str) -> TokenRecord | None:
        token = self.tokens.get(token_hash)
        if token is None or token.purpose != purpose:
            return None
        return TokenRecord(
            purpose=token.purpose,
            email=token.email,
            expires_at=token.expires_at,
            used_at=token.used_at,
            used_by=token.used_by,
        )

    def complete_verification(
        self,
        *,
        token_hash: str,
        attempt: SignupAttempt,
        client_id: int,
        used_by: str,
        acceptances: list[Acceptance],
        now: datetime,
    ) -> Account:
        token = self.tokens.get(token_hash)
        if token is None or token.purpose != "verify":
            raise TokenInvalid()
        if token.used_at is not None:
            raise TokenUsed(token.email, same_browser=token.used_by == used_by)
        if token.expires_at <= now:
            raise TokenExpired()
        if token.attempt is None or token.attempt.password_hash != attempt.password_hash:
            raise TokenInvalid()
        existing = self.accounts.get(attempt.email)
        if existing is not None and existing.status is not AccountStatus.PENDING:
            raise AccountExists(attempt.email)
        token.used_at, token.used_by, token.attempt = now, used_by, None
        account = Account(
            email=attempt.email,
            client_id=client_id,
            name=attempt.name,
            company=attempt.company,
            password_hash=attempt.password_hash,
            status=AccountStatus.VERIFIED,
            created_at=now,
            verified_at=now,
        )
        self.accepted.extend(acceptances)
        return self.add(account)

    def discard_attempt(self, token_hash: str) -> None:
        self.tokens.pop(token_hash, None)

    def start_reset(self, email: str, token_hash: str, expires: datetime) -> None:
        assert email in self.accounts
        self.tokens[token_hash] = _Token("reset", email, expires)
        self.reset_tokens[email] = token_hash

    def complete_reset(self, *, token_hash: str, email: str, password_hash: str, now: datetime) -> None:
        token = self.tokens.get(token_hash)
        if token is not None and token.used_at is not None:
            raise TokenUsed(token.email)
        if token is not None and token.expires_at <= now:
            raise TokenExpired()
        if token is None or token.purpose != "reset" or self.reset_tokens.get(email) != token_hash:
            raise TokenInvalid()
        token.used_at = now
        del self.reset_tokens[email]
        self._update(email, password_hash=password_hash)

    def reset_token_current(self, email: str, token_hash: str) -> bool:
        return self.reset_tokens.get(email) == token_hash

    def set_password(self, email: str, password_hash: str, *, replacing: str | None = None) -> bool:
        account = self.accounts.get(email)
        if account is None or (replacing is not None and account.password_hash != replacing):
            return False
        self._update(email, password_hash=password_hash)
        return True

    def set_billing_details(self, email: str, address: tuple[str, ...], tax_id: str) -> None:
        self._update(email, billing_address=address, tax_id=tax_id)

    def acceptances(self, client_id: int) -> list[Acceptance]:
        return [a for a in self.accepted if a.client_id == client_id]

    def lock_provisioning(self, email: str, now: datetime, hold: timedelta) -> bool:
        account = self.accounts.get(email)
        if account is None or account.status is not AccountStatus.VERIFIED:
            return False
        if email in self.locks and self.locks[email] >= now:
            return False
        self.locks[email] = now + hold
        self._update(email, provisioning_attempts=account.provisioning_attempts + 1)
        return True

    def provisioning_locked(self, email: str, now: datetime) -> bool:
        return email in self.locks and self.locks[email] >= now

    def mark_enrolled(self, email: str, solus_user_id: int, now: datetime) -> None:
        assert self.accounts[email].status is AccountStatus.VERIFIED
        self.locks.pop(email, None)
        self._update(
            email,
            status=AccountStatus.ENROLLED,
            solus_user_id=solus_user_id,
            enrolled_at=now,
            provisioning_error=None,
            notify_when_enrolled=False,
        )

    def mark_provisioning_failed(self, email: str, error: str, *, notify_when_enrolled: bool) -> None:
        self.locks.pop(email, None)
        changes: dict[str, Any] = {"provisioning_error": error[:500]}
        if notify_when_enrolled:
            changes["notify_when_enrolled"] = True
        self._update(email, **changes)


@dataclass
class _Session:
    email: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime


class FakeSessions:
    """postpay.ports.SessionStore in memory."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.touches = 0

    def create_session(
        self, session_hash: str, *, email: str, now: datetime, idle: timedelta, absolute: timedelta
    ) -> None:
        assert session_hash not in self.sessions
        self.sessions[session_hash] = _Session(email, now, now, now + idle, now + absolute)

    def get_session(self, session_hash: str, now: datetime) -> Session | None:
        s = self.sessions.get(session_hash)
        if s is None or s.expires_at <= now or s.absolute_expires_at <= now:
            return None
        return Session(email=s.email, created_at=s.created_at, last_seen_at=s.last_seen_at)

    def touch_session(self, session_hash: str, now: datetime, idle: timedelta) -> None:
        if session_hash in self.sessions:
            self.touches += 1
            self.sessions[session_hash].last_seen_at = now
            self.sessions[session_hash].expires_at = now + idle

    def delete_session(self, session_hash: str) -> None:
        self.sessions.pop(session_hash, None)

    def delete_sessions_of(self, email: str, *, keep: str | None = None) -> int:
        doomed = [h for h, s in self.sessions.items() if s.email == email and h != keep]
        for h in doomed:
            del self.sessions[h]
        return len(doomed)


class FakeCounters:
    """postpay.ports.Counters in memory: fixed windows, as the DynamoDB store keeps them."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.windows: dict[str, int] = {}

    def next_value(self, name: str) -> int:
        self.values[name] = self.values.get(name, 0) + 1
        return self.values[name]

    @staticmethod
    def _key(key: str, window: timedelta, now: datetime) -> str:
        seconds = int(window.total_seconds())
        return f"{key}#{int(now.timestamp()) // seconds * seconds}"

    def hit(self, key: str, window: timedelta, now: datetime) -> int:
        full = self._key(key, window, now)
        self.windows[full] = self.windows.get(full, 0) + 1
        return self.windows[full]

    def hits(self, key: str, window: timedelta, now: datetime) -> int:
        return self.windows.get(self._key(key, window, now), 0)

    def clear_hits(self, key: str, window: timedelta, now: datetime) -> None:
        self.windows.pop(self._key(key, window, now), None)


# ---------------------------------------------------------------------------------- outside systems


@dataclass
class SentMail:
    to: str
    template: str
    context: dict[str, Any]
    attachments: tuple[Any, ...] = ()


class FakeMailer:
    """postpay.ports.Mailer: keeps what would have been sent; ``fail_next`` makes sends raise."""

    def __init__(self) -> None:
        self.sent: list[SentMail] = []
        self.fail_next = 0

    def send(self, to: str, template: str, *, attachments: tuple[Any, ...] = (), **context: Any) -> str:
        return self.deliver(self.compose(to, template, attachments=attachments, **context))

    def compose(
        self, to: str, template: str, *, attachments: tuple[Any, ...] = (), **context: Any
    ) -> SentMail:
        return SentMail(to, template, context, attachments)

    def deliver(self, message: SentMail) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("SES unavailable")
        self.sent.append(message)
        return f"message-{len(self.sent)}"

    def to(self, address: str) -> list[str]:
        return [m.template for m in self.sent if m.to == address]


@dataclass
class FakeSolus:
    """postpay.ports.SolusVM: users and usage in memory; ``down`` makes every call fail as a timeout would,
    ``lose_create_answer`` creates the user but raises, as a lost answer does."""

    users: dict[int, SolusUser] = field(default_factory=dict)
    usage_by_user: dict[int, dict] = field(default_factory=dict)
    down: bool = False
    lose_create_answer: bool = False
    calls: list[str] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise SolusUnavailable(f"{name}: timed out")

    def find_user_by_email(self, email: str) -> SolusUser | None:
        self._call("find_user_by_email")
        return next((u for u in self.users.values() if u.email == email), None)

    def get_user(self, user_id: int) -> SolusUser:
        self._call("get_user")
        return self.users[user_id]

    def create_user(self, *, email: str, billing_user_id: int, limit_group_id: int | None) -> SolusUser:
        self._call("create_user")
        user = SolusUser(
            id=len(self.users) + 100, email=email, status="active", billing_user_id=billing_user_id
        )
        self.users[user.id] = user
        if self.lose_create_answer:
            self.lose_create_answer = False
            raise SolusUnavailable("create_user: answer lost")
        return user

    def link_user(self, user_id: int, billing_user_id: int) -> SolusUser:
        self._call("link_user")
        self.users[user_id] = dataclasses.replace(self.users[user_id], billing_user_id=billing_user_id)
        return self.users[user_id]

    def set_status(self, user_id: int, status: str) -> SolusUser:
        self._call("set_status")
        self.users[user_id] = dataclasses.replace(self.users[user_id], status=status)
        return self.users[user_id]

    def one_time_login_token(self, user_id: int) -> str:
        self._call("one_time_login_token")
        return f"sso-{user_id}"

    def usage(self, user_id: int, date_from: date, date_to: date) -> dict:
        self._call("usage")
        return self.usage_by_user.get(user_id, {"data": {"servers": []}})

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        yield


# ---------------------------------------------------------------------------------------------- billing


@dataclass
class _Record:
    """One (client, period): the invoice, or the record that there was nothing to bill."""

    outcome: str
    invoice: Invoice | None
    email_lease_until: datetime | None = None
    email_sent_at: datetime | None = None


class FakeBilling:
    """postpay.ports.InvoiceStore in memory, with the conditions of the DynamoDB transactions: one record
    per (client, period), one outcome per (run, client) (a "failed" one may be replaced when its job is
    redriven), invoice numbers from a counter moved only with an invoice."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.outcome_items: dict[tuple[str, int], dict[str, Any]] = {}
        self.records: dict[tuple[int, str], _Record] = {}
        self.requests: dict[str, tuple[str, datetime]] = {}
        self.counter = 0
        self.heartbeat: datetime | None = None
        self.kept: list[Invoice] = []  # void invoices re-bills replaced

    # runs
    def start_run(
        self, run_id: str, *, trigger: str, period: dict[str, str], now: datetime, dry_run: bool = False
    ) -> bool:
        if run_id in self.runs:
            return False
        counts = dict.fromkeys(("queued", *OUTCOMES), 0)
        self.runs[run_id] = {
            "trigger": trigger,
            "period": period,
            "state": "queuing",
            "dry_run": dry_run,
            "counts": counts,
            "started_at": now,
            "updated_at": now,
        }
        return True

    def claim_request(self, key: str, run_id: str, *, now: datetime, window: timedelta) -> str:
        existing = self.requests.get(key)
        if existing is not None and existing[1] >= now - window:
            return existing[0]
        self.requests[key] = (run_id, now)
        return run_id

    def outcomes(
        self, run_id: str, *, after: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        clients = sorted(c for r, c in self.outcome_items if r == run_id and (after is None or c > after))
        page = [
            {"clientId": c, "outcome": self.outcome_items[(run_id, c)]["outcome"]} for c in clients[:limit]
        ]
        return page, (clients[limit - 1] if len(clients) > limit else None)

    def finish_queuing(self, run_id: str, queued: int, now: datetime) -> None:
        self.runs[run_id].update(state="queued", updated_at=now)
        self.runs[run_id]["counts"]["queued"] = queued

    def run(self, run_id: str) -> RunRecord | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        failures = {
            c: o["reason"] or ""
            for (r, c), o in self.outcome_items.items()
            if r == run_id and o["outcome"] == "failed"
        }
        return RunRecord(
            run_id,
            run["trigger"],
            run["period"],
            run["state"],
            dict(run["counts"]),
            run["started_at"],
            run["updated_at"],
            failures,
            run["dry_run"],
        )

    def daily_heartbeat(self, now: datetime) -> datetime | None:
        previous, self.heartbeat = self.heartbeat, now
        return previous

    # issuing: the checks a transaction's conditions make, then every write, or none
    def _outcome_free(self, run_id: str, client_id: int, outcome: str) -> bool:
        """Whether the run may record ``outcome`` for the client: none yet, or a failed one to replace."""
        if run_id not in self.runs:
            raise RuntimeError(f"no run {run_id}")
        existing = self.outcome_items.get((run_id, client_id))
        return existing is None or (existing["outcome"] == "failed" and outcome != "failed")

    def _write_outcome(self, run_id: str, client_id: int, outcome: str, now: datetime, **fields: Any) -> None:
        counts = self.runs[run_id]["counts"]
        replaced = self.outcome_items.get((run_id, client_id))
        if replaced is not None:
            counts[replaced["outcome"]] -= 1
        self.outcome_items[(run_id, client_id)] = {"outcome": outcome, "at": now, "reason": None, **fields}
        counts[outcome] += 1
        self.runs[run_id]["updated_at"] = now

    def issue(
        self,
        invoice_for: Callable[..., Invoice],
        *,
        run_id: str,
        now: datetime,
        email_lease: timedelta,
        replace_nothing: bool = False,
    ) -> Invoice:
        invoice = invoice_for(self.counter + 1)
        key = (invoice.client_id, invoice.period_key)
        existing = self.records.get(key)
        void = (
            existing is not None
            and existing.invoice is not None
            and existing.invoice.status is InvoiceStatus.VOID
        )
        if existing is not None and not (replace_nothing and (existing.outcome == "nothing_to_bill" or void)):
            raise AlreadyBilled(key)
        if not self._outcome_free(run_id, invoice.client_id, "invoiced"):
            raise OutcomeRecorded(key)
        if void and existing is not None and existing.invoice is not None:
            self.kept.append(existing.invoice)  # a re-bill keeps the void invoice it replaces
        self.counter += 1
        self.records[key] = _Record("invoiced", invoice, email_lease_until=now + email_lease)
        self._write_outcome(run_id, invoice.client_id, "invoiced", now, number=invoice.number)
        return invoice

    def record_nothing(
        self, *, client_id: int, email: str, period_key: str, usage: str, run_id: str, now: datetime
    ) -> None:
        key = (client_id, period_key)
        if key in self.records:
            raise AlreadyBilled(key)
        if not self._outcome_free(run_id, client_id, "nothing_to_bill"):
            raise OutcomeRecorded(key)
        self.records[key] = _Record("nothing_to_bill", None)
        self._write_outcome(run_id, client_id, "nothing_to_bill", now)

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
        if not self._outcome_free(run_id, client_id, outcome):
            return False
        self._write_outcome(run_id, client_id, outcome, now, number=number, reason=reason, detail=detail)
        return True

    def issue_batch(
        self,
        entries: list[ToIssue],
        *,
        now: datetime,
        email_lease: timedelta,
        sending: Callable[[dict[int, Invoice]], None] | None = None,
    ) -> list[Invoice | AlreadyBilled | OutcomeRecorded | None]:
        """Each entry as its own transaction would write it, in order; a copy of an earlier entry is
        AlreadyBilled, as the store leaves it out of the batch. (No transaction goes out: ``sending`` is
        never told.)"""
        results: list[Invoice | AlreadyBilled | OutcomeRecorded | None] = []
        seen: set[str] = set()
        for entry in entries:
            if entry.key in seen:
                results.append(AlreadyBilled(entry.key))
                continue
            seen.add(entry.key)
            try:
                if entry.invoice_for is None:
                    self.record_nothing(
                        client_id=entry.client_id,
                        email=entry.email,
                        period_key=entry.period_key,
                        usage=entry.usage,
                        run_id=entry.run_id,
                        now=now,
                    )
                    results.append(None)
                else:
                    taken = self._open_carried(entry)
                    balances = tuple(CarriedBalance(number=i.number, amount=i.total) for i in taken)
                    build = (
                        functools.partial(entry.invoice_for, carried=balances)
                        if balances
                        else entry.invoice_for
                    )
                    invoice = self.issue(
                        build,
                        run_id=entry.run_id,
                        now=now,
                        email_lease=email_lease,
                        replace_nothing=entry.replace_nothing,
                    )
                    for carried in taken:  # taken with the invoice, as the store's transaction does
                        record = self.records[(carried.client_id, carried.period_key)]
                        record.invoice = dataclasses.replace(carried, carried_to=invoice.number)
                    results.append(invoice)
            except (AlreadyBilled, OutcomeRecorded) as refused:
                results.append(refused)
        return results

    def _open_carried(self, entry: ToIssue) -> list[Invoice]:
        return [
            r.invoice
            for (c, period), r in sorted(self.records.items())
            if c == entry.client_id
            and period < entry.period_key
            and r.invoice is not None
            and r.invoice.status is InvoiceStatus.CARRIED
            and r.invoice.carried_to is None
            and r.invoice.currency == entry.currency
        ]

    def outcome_of(self, run_id: str, client_id: int) -> str | None:
        item = self.outcome_items.get((run_id, client_id))
        return item["outcome"] if item else None

    # reading
    def billed(self, client_id: int, period_key: str) -> tuple[str, Invoice | None] | None:
        record = self.records.get((client_id, period_key))
        return (record.outcome, record.invoice) if record else None

    def invoice_by_number(self, number: str) -> Invoice | None:
        return next(
            (r.invoice for r in self.records.values() if r.invoice and r.invoice.number == number), None
        )

    def invoice_of(self, client_id: int, number: str) -> Invoice | None:
        invoice = self.invoice_by_number(number)
        return invoice if invoice is not None and invoice.client_id == client_id else None

    def invoices_of(self, client_id: int) -> list[Invoice]:
        return [
            r.invoice
            for (c, _), r in sorted(self.records.items(), reverse=True)
            if c == client_id and r.invoice
        ]

    def unpaid_due_before(self, day: date) -> Iterator[Invoice]:
        yield from [
            r.invoice
            for r in self.records.values()
            if r.invoice and r.invoice.status is InvoiceStatus.UNPAID and r.invoice.due_on < day
        ]

    # email and payment
    def claim_email(self, invoice: Invoice, now: datetime, lease: timedelta) -> str:
        record = self.records[(invoice.client_id, invoice.period_key)]
        if record.email_sent_at is not None:
            return "sent"
        if record.email_lease_until is not None and record.email_lease_until >= now:
            return "leased"
        record.email_lease_until = now + lease
        return "claimed"

    def mark_emailed(self, invoice: Invoice, message_id: str, now: datetime) -> None:
        record = self.records[(invoice.client_id, invoice.period_key)]
        record.email_sent_at, record.email_lease_until = now, None

    def mark_paid(self, number: str, reference: str, now: datetime) -> Invoice:
        for record in self.records.values():
            if record.invoice is not None and record.invoice.number == number:
                if record.invoice.status is not InvoiceStatus.UNPAID:
                    raise ValueError(f"invoice {number} is {record.invoice.status}, not unpaid")
                record.invoice = dataclasses.replace(
                    record.invoice, status=InvoiceStatus.PAID, paid_at=now, payment_reference=reference
                )
                return record.invoice
        raise LookupError(number)


class FakeQueue:
    """postpay.ports.Queue: keeps the messages, as SQS would hold them."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send_all(self, messages: Iterable[dict[str, Any]]) -> int:
        before = len(self.messages)
        self.messages.extend(messages)
        return len(self.messages) - before


if TYPE_CHECKING:  # mypy (make typecheck) holds every fake to its port
    from postpay import ports

    _accounts: ports.AccountStore = FakeAccounts()
    _sessions: ports.SessionStore = FakeSessions()
    _counters: ports.Counters = FakeCounters()
    _billing: ports.InvoiceStore = FakeBilling()
    _solus: ports.SolusVM = FakeSolus()
    _mailer: ports.Mailer = FakeMailer()
    _queue: ports.Queue = FakeQueue()


class FakeGateway:
    """postpay.ports.PaymentGateway: PaymentIntents in memory, their statuses set by the test; every
    creating call counted, and refunds keyed as Stripe keys them (the same key is the same refund)."""

    def __init__(self) -> None:
        self.intents: dict[str, ChargeResult] = {}
        self.charge_status = "succeeded"
        self.calls: list[str] = []
        self.refunds: dict[str, int] = {}  # idempotency key -> amount

    def create_customer(self, *, client_id: int, email: str) -> str:
        return f"cus_{client_id}"

    def setup_intent(self, *, customer: str) -> str:
        return f"seti_{customer}_secret"

    def card(self, payment_method: str) -> Card:
        return Card(payment_method=payment_method, brand="visa", last4="4242", exp_month=12, exp_year=2034)

    def saved_card(self, *, setup_intent: str, customer: str) -> Card:
        return self.card("pm_1")

    def detach(self, payment_method: str) -> None:
        self.calls.append(f"detach {payment_method}")

    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        invoice_number: str,
        attempt: int,
        off_session: bool = True,
    ) -> ChargeResult:
        intent_id = f"pi_{invoice_number}_{attempt}"
        self.calls.append(f"charge {intent_id}")
        self.intents[intent_id] = ChargeResult(
            intent_id=intent_id,
            status=self.charge_status,
            invoice_number=invoice_number,
            amount_minor=amount_minor,
            client_secret=f"{intent_id}_secret",
        )
        return self.intents[intent_id]

    def find_charge(self, *, customer: str, invoice_number: str, attempt: int) -> ChargeResult | None:
        return self.intents.get(f"pi_{invoice_number}_{attempt}")

    def get_charge(self, intent_id: str) -> ChargeResult:
        return self.intents[intent_id]

    def cancel_charge(self, intent_id: str) -> ChargeResult:
        self.calls.append(f"cancel {intent_id}")
        current = self.intents[intent_id]
        if current.status in ("requires_action", "requires_payment_method", "requires_confirmation"):
            self.intents[intent_id] = dataclasses.replace(current, status="canceled")
        return self.intents[intent_id]

    def refund(self, *, intent_id: str, amount_minor: int, reason: str, key: str) -> int:
        self.calls.append(f"refund {intent_id}")
        return self.refunds.setdefault(key, amount_minor)

    def parse_event(self, payload: str, signature: str | None) -> PaymentEvent:
        raise NotImplementedError
