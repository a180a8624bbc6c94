"""Guessing limits shared by every password check, with an in-memory rate-limit store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postpay.config import Settings
from postpay.errors import RateLimited
from postpay.services.guard import PasswordGuard
from tests.unit.test_config import BASE


class Counts:
    """The rate-limit part of the store: fixed windows, as the DynamoDB one keeps them."""

    def __init__(self) -> None:
        self.windows: dict[str, int] = {}

    def _key(self, key: str, window: timedelta, now: datetime) -> str:
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


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


@pytest.fixture
def guard() -> PasswordGuard:
    settings = Settings.from_env({**BASE, "LOGIN_FAILURES_PER_ACCOUNT": "3", "LOGIN_FAILURES_PER_IP": "5"})
    return PasswordGuard(settings=settings, counters=Counts(), clock=Clock())  # type: ignore[arg-type]


def test_an_account_is_locked_after_its_limit_of_failures_from_anywhere(guard):
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        guard.check("ada@example.com", ip)
        guard.failed("ada@example.com", ip)
    with pytest.raises(RateLimited):
        guard.check("ada@example.com", "198.51.100.7")
    guard.check("grace@example.com", "198.51.100.7")  # another account is untouched


def test_a_source_is_locked_after_its_limit_across_accounts(guard):
    for n in range(5):
        guard.failed(f"user{n}@example.com", "192.0.2.9")
    with pytest.raises(RateLimited):
        guard.check("fresh@example.com", "192.0.2.9")
    with pytest.raises(RateLimited):
        guard.check("reset", "192.0.2.9", per_account=False)


def test_a_reset_does_not_meet_the_account_limit_and_clears_it(guard):
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        guard.failed("ada@example.com", ip)
    guard.check("ada@example.com", "203.0.113.5", per_account=False)
    guard.forgive("ada@example.com")
    guard.check("ada@example.com", "203.0.113.5")


def test_the_window_passes(guard):
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        guard.failed("ada@example.com", ip)
    guard.clock.moment += timedelta(minutes=15)
    guard.check("ada@example.com", "192.0.2.1")
