"""The client area's logic: login with rate limits, password reset and change, usage so far this month."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from postpay.adapters.params import Pricing
from postpay.billing import money
from postpay.billing.periods import local_date
from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import RateLimited, SolusRejected, SolusUnavailable, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Account, TokenRecord
from postpay.observability import logger
from postpay.security import address_key, hash_password, new_token, token_hash, verify_password
from postpay.validation import normalize_email, password_problem

if TYPE_CHECKING:
    from postpay.adapters.dynamo import DynamoStore
    from postpay.services.enrollment import Mailer

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
        store: DynamoStore,
        solus: Any,
        mailer: Mailer,
        clock: Clock,
        pricing: Callable[[], Pricing],
    ) -> None:
        self.settings = settings
        self.store = store
        self.solus = solus
        self.mailer = mailer
        self.clock = clock
        self.pricing = pricing
        self.window = timedelta(minutes=settings.login_failure_window_minutes)

    # login -----------------------------------------------------------------------------------------

    def login(self, raw_email: str, password: str, *, source_ip: str) -> Account:
        """The account, or LoginFailed / RateLimited. The same work whether or not the email exists."""
        email = normalize_email(raw_email)
        now = self.clock.now()
        account_key, ip_key = f"login-fail#{address_key(email)}", f"login-fail-ip#{source_ip}"
        if (
            self.store.hits(account_key, self.window, now) >= self.settings.login_failures_per_account
            or self.store.hits(ip_key, self.window, now) >= self.settings.login_failures_per_ip
        ):
            raise RateLimited("login")
        account = self.store.get_account(email) if email and len(email) <= 254 else None
        if not verify_password(password[:256], account.password_hash if account else None) or account is None:
            self.store.hit(account_key, self.window, now)
            self.store.hit(ip_key, self.window, now)
            raise LoginFailed()
        return account

    # password reset --------------------------------------------------------------------------------

    def forgot(self, raw_email: str, *, source_ip: str) -> None:
        """Mails a reset link if the account exists; otherwise does the same work and sends nothing."""
        email = normalize_email(raw_email)
        now = self.clock.now()
        if self.store.hit(f"reset-ip#{source_ip}", HOUR, now) > self.settings.signups_per_ip_per_hour:
            raise RateLimited("reset from this address")
        if (
            self.store.hit(f"reset-email#{address_key(email)}", HOUR, now)
            > self.settings.signup_emails_per_address_per_hour
        ):
            raise RateLimited("reset emails to this address")
        account = self.store.get_account(email) if email and len(email) <= 254 else None
        if account is None:
            return
        token = new_token()
        self.store.start_reset(
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
        record = self.store.get_token(token_hash(token), "reset")
        if record is None or not self.store.reset_token_current(record.email, token_hash(token)):
            if record is not None and record.used_at is not None:
                raise TokenUsed(record.email)
            raise TokenInvalid()
        if record.expires_at <= self.clock.now():
            raise TokenExpired()
        return record

    def reset(self, token: str, new_password: str) -> str:
        """Sets the new password and ends every session of the account; returns the email."""
        record = self.check_reset(token)
        problem = password_problem(new_password, record.email)
        if problem:
            raise PasswordRejected("password", problem)
        self.store.complete_reset(
            token_hash=token_hash(token),
            email=record.email,
            password_hash=hash_password(new_password),
            now=self.clock.now(),
        )
        ended = self.store.delete_sessions_of(record.email)
        logger.info("password reset", extra={"sessions_ended": ended})
        return record.email

    def change_password(self, account: Account, current: str, new: str) -> None:
        if not verify_password(current[:256], account.password_hash):
            raise PasswordRejected("current_password", "Your current password is not correct.")
        problem = password_problem(new, account.email)
        if problem:
            raise PasswordRejected("new_password", problem)
        self.store.set_password(account.email, hash_password(new))

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
