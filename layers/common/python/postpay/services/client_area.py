"""The client area's logic: login with rate limits, password reset and change, usage so far this month."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from postpay import money
from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import RateLimited, SolusRejected, SolusUnavailable, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Account, AccountStatus, TokenRecord
from postpay.observability import logger
from postpay.periods import local_date
from postpay.security import address_key, hash_password, needs_rehash, new_token, token_hash, verify_password
from postpay.validation import normalize_email, password_problem

if TYPE_CHECKING:
    from postpay.ports import AccountStore, Counters, Mailer, PricingSource, SessionStore, SolusVM
    from postpay.services.guard import PasswordGuard

USAGE_CACHE_SECONDS = 300
HOUR = timedelta(hours=1)


class LoginFailed(Exception):
    """Email or password is incorrect (deliberately not saying which)."""


class PasswordRejected(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class UsageSoFar:
    tokens: int
    amount: Decimal
    currency: str
    since: str


class ClientArea:
    _usage_cache: dict[int, tuple[float, UsageSoFar]] = {}

    def __init__(
        self,
        *,
        settings: Settings,
        accounts: AccountStore,
        sessions: SessionStore,
        counters: Counters,
        solus: SolusVM,
        mailer: Mailer,
        clock: Clock,
        pricing: PricingSource,
        guard: PasswordGuard,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sessions = sessions
        self.counters = counters
        self.solus = solus
        self.mailer = mailer
        self.clock = clock
        self.pricing = pricing
        self.guard = guard

    # login -----------------------------------------------------------------------------------------

    def login(self, raw_email: str, password: str, *, source_ip: str) -> Account:
        """The account, or LoginFailed / RateLimited. The same work whether or not the email exists.

        Only a verified (or enrolled) account logs in: an address nobody has proved is no account."""
        email = normalize_email(raw_email)
        self.guard.check(email, source_ip)
        account = self.accounts.get_account(email) if email and len(email) <= 254 else None
        correct = verify_password(password, account.password_hash if account else None)
        if not correct or account is None or account.status is AccountStatus.PENDING:
            self.guard.failed(email, source_ip)
            raise LoginFailed()
        if needs_rehash(account.password_hash):
            self.accounts.set_password(email, hash_password(password), replacing=account.password_hash)
        return account

    # password reset --------------------------------------------------------------------------------

    def forgot(self, raw_email: str, *, source_ip: str) -> None:
        """Mails a reset link if the account exists; otherwise does the same work and sends nothing."""
        email = normalize_email(raw_email)
        now = self.clock.now()
        if self.counters.hit(f"reset-ip#{source_ip}", HOUR, now) > self.settings.signups_per_ip_per_hour:
            raise RateLimited("reset from this address")
        if (
            self.counters.hit(f"reset-email#{address_key(email)}", HOUR, now)
            > self.settings.signup_emails_per_address_per_hour
        ):
            raise RateLimited("reset emails to this address")
        account = self.accounts.get_account(email) if email and len(email) <= 254 else None
        if account is None or account.status is AccountStatus.PENDING:
            return
        token = new_token()
        self.accounts.start_reset(
            email, token_hash(token), now + timedelta(minutes=self.settings.reset_token_ttl_minutes)
        )
        self.mailer.send(
            email,
            "reset",
            name=account.name,
            link=self.settings.url(f"reset?token={token}"),
            minutes=self.settings.reset_token_ttl_minutes,
        )

    def check_reset(self, token: str) -> TokenRecord:
        if not token or len(token) > 128:
            raise TokenInvalid()
        record = self.accounts.get_token(token_hash(token), "reset")
        if record is None or not self.accounts.reset_token_current(record.email, token_hash(token)):
            if record is not None and record.used_at is not None:
                raise TokenUsed(record.email)
            raise TokenInvalid()
        if record.expires_at <= self.clock.now():
            raise TokenExpired()
        return record

    def reset(self, token: str, new_password: str, *, source_ip: str) -> Account:
        """Sets the new password and ends every session of the account; returns the account.

        Bad links count against the source's guessing limit; the account's own limit does not apply (and is
        cleared): a reset link lets the owner of the mailbox in while someone guesses at their password."""
        self.guard.check("reset", source_ip, per_account=False)
        try:
            record = self.check_reset(token)
        except TokenInvalid:
            self.guard.failed("reset", source_ip)
            raise
        account = self.accounts.get_account(record.email)
        if account is None or account.status is AccountStatus.PENDING:
            raise TokenInvalid()
        problem = password_problem(new_password, record.email, name=account.name, company=account.company)
        if problem:
            raise PasswordRejected("password", problem)
        self.accounts.complete_reset(
            token_hash=token_hash(token),
            email=record.email,
            password_hash=hash_password(new_password),
            now=self.clock.now(),
        )
        ended = self.sessions.delete_sessions_of(record.email)
        self.guard.forgive(record.email)
        logger.info("password reset", extra={"sessions_ended": ended})
        return account

    def change_password(
        self, account: Account, current: str, new: str, *, source_ip: str, session_id: str | None
    ) -> int:
        """Checks the current password (within the guessing limits), sets the new one and ends every other
        session of the account; returns how many ended. Raises PasswordRejected or RateLimited."""
        self.guard.check(account.email, source_ip)
        if not verify_password(current, account.password_hash):
            self.guard.failed(account.email, source_ip)
            raise PasswordRejected("current_password", "Your current password is not correct.")
        problem = password_problem(new, account.email, name=account.name, company=account.company)
        if problem:
            raise PasswordRejected("new_password", problem)
        self.accounts.set_password(account.email, hash_password(new))
        keep = token_hash(session_id) if session_id and len(session_id) <= 128 else None
        ended = self.sessions.delete_sessions_of(account.email, keep=keep)
        logger.info("password changed", extra={"sessions_ended": ended})
        return ended

    # usage -----------------------------------------------------------------------------------------

    def usage_so_far(self, account: Account) -> UsageSoFar | None:
        """Tokens used this month and their price now; None when SolusVM or the price cannot be read."""
        if account.solus_user_id is None:
            return None
        cached = self._usage_cache.get(account.solus_user_id)
        if cached and time.monotonic() - cached[0] < USAGE_CACHE_SECONDS:
            return cached[1]
        today = local_date(self.clock.now(), self.settings.billing_timezone)
        first = today.replace(day=1)
        try:
            data = (self.solus.usage(account.solus_user_id, first, today) or {}).get("data") or {}
            tokens = sum(int(s.get("tokens") or 0) for s in data.get("servers") or [])
            pricing = self.pricing()
        except (SolusUnavailable, SolusRejected, ValueError, TypeError, AttributeError) as error:
            logger.warning("usage so far unavailable", extra={"reason": str(error)})
            return None
        except Exception:  # the price parameters: the dashboard still renders
            logger.exception("pricing unavailable")
            return None
        usage = UsageSoFar(
            tokens,
            money.line_amount(tokens, pricing.token_price, pricing.currency),
            pricing.currency,
            first.isoformat(),
        )
        self._usage_cache[account.solus_user_id] = (time.monotonic(), usage)
        return usage
