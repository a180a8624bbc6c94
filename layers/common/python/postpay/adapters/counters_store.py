"""DynamoDB for rate limits (hits in fixed windows, expired by TTL) and atomic counters (client ids)."""

from __future__ import annotations

from datetime import datetime, timedelta

from postpay.adapters.tables import CounterItem, RateLimitItem
from postpay.adapters.tables import epoch as _epoch


class CountersStore:
    def next_value(self, name: str) -> int:
        """Atomic counter: concurrent callers always get distinct values."""
        item = CounterItem(name)
        item.update(actions=[CounterItem.value.add(1)])
        return int(item.value)

    def hit(self, key: str, window: timedelta, now: datetime) -> int:
        """Counts one hit in the fixed window that contains ``now``; returns the window's count so far."""
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        item = RateLimitItem(f"{key}#{start}")
        item.update(actions=[RateLimitItem.hits.add(1), RateLimitItem.expires_at.set(start + seconds)])
        return int(item.hits)

    def hits(self, key: str, window: timedelta, now: datetime) -> int:
        """The count of the current window, without adding to it."""
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        try:
            return int(RateLimitItem.get(f"{key}#{start}", consistent_read=True).hits or 0)
        except RateLimitItem.DoesNotExist:
            return 0

    def clear_hits(self, key: str, window: timedelta, now: datetime) -> None:
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        RateLimitItem(f"{key}#{start}").delete()
