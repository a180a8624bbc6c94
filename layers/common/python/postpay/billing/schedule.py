"""The daily schedule's payload, and what every payload's refusal is: all the run handler imports up front.

EventBridge's scheduled event is the automation function's usual first request; the operator's payloads
(``postpay.billing.commands``, a dozen command types) are imported by the first one an operator sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from postpay.periods import local_date


class PayloadError(ValueError):
    """The operator's payload is refused; the message says why."""


def shown(value: Any, limit: int = 200) -> str:
    """A payload value as the operator typed it: JSON (null, true, {"client": 3}), not a Python repr."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Daily:
    today: date  # the local date of the scheduled run, in the billing time zone
    # Sent by the schedule (with its scheduled time), not an operator's {"schedule": "daily"}: only these
    # count as the heartbeat the MissedDailyRun alarm watches.
    scheduled: bool = True


def is_scheduled(event: Any) -> bool:
    """EventBridge's scheduled event (source ``aws.events``), as the schedule rule sends it."""
    return isinstance(event, dict) and event.get("source") == "aws.events"


def daily(event: dict[str, Any], timezone: str, now: datetime, scheduled: bool = True) -> Daily:
    return Daily(local_date(scheduled_time(event, now), timezone), scheduled)


def scheduled_time(event: dict[str, Any], now: datetime) -> datetime:
    raw = event.get("time") or event.get("scheduledTime")
    if not raw:
        return now
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as error:
        raise PayloadError(f"scheduled time {shown(raw)} is not a timestamp") from error
