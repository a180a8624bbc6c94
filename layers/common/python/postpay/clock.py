"""Time, behind a port so tests can move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def monotonic() -> float:
    return time.monotonic()
