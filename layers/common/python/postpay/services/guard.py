"""Guessing limits shared by every password check: log-in, the terms page, password change.

Failures are counted per account and per source IP in fixed windows (rate-limit records with TTL); past
either limit a check is refused before any hash is computed, so guessing costs the attacker time and us
no CPU. A reset link does not go through the per-account limit: the owner of the mailbox always gets in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import RateLimited
from postpay.observability import logger, metrics
from postpay.security import address_key

if TYPE_CHECKING:
    from postpay.ports import Counters


class PasswordGuard:
    def __init__(self, *, settings: Settings, counters: Counters, clock: Clock) -> None:
        self.settings = settings
        self.counters = counters
        self.clock = clock
        self.window = timedelta(minutes=settings.login_failure_window_minutes)

    @staticmethod
    def _keys(subject: str, source_ip: str) -> tuple[str, str]:
        """``subject``: the account's email, or another name for what is being guessed (a sign-up attempt)."""
        return f"login-fail#{address_key(subject)}", f"login-fail-ip#{source_ip}"

    def check(self, subject: str, source_ip: str, *, per_account: bool = True) -> None:
        """RateLimited when this account or this source has failed too often in the window."""
        account_key, ip_key = self._keys(subject, source_ip)
        now = self.clock.now()
        if self.counters.hits(ip_key, self.window, now) >= self.settings.login_failures_per_ip or (
            per_account
            and self.counters.hits(account_key, self.window, now) >= self.settings.login_failures_per_account
        ):
            metrics.add_metric(name="PasswordChecksRefused", unit="Count", value=1)
            raise RateLimited("password guesses")

    def failed(self, subject: str, source_ip: str) -> None:
        account_key, ip_key = self._keys(subject, source_ip)
        now = self.clock.now()
        self.counters.hit(account_key, self.window, now)
        self.counters.hit(ip_key, self.window, now)
        logger.info("password check failed")

    def forgive(self, email: str) -> None:
        """The owner proved they hold the mailbox (a reset): their account's failures are cleared."""
        account_key, _ = self._keys(email, "")
        self.counters.clear_hits(account_key, self.window, self.clock.now())
