"""What the automation function is asked to do: the daily schedule or an operator's payload, validated.

A malformed payload fails the invoke with a message saying what is wrong, before anything happens."""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from postpay.periods import Period, local_date, month_before


class PayloadError(ValueError):
    """The operator's payload is refused; the message says why."""


@dataclass(frozen=True)
class Daily:
    today: date  # the local date of the scheduled run, in the billing time zone


@dataclass(frozen=True)
class InvoiceMonth:
    period: Period
    dry_run: bool
    invoicing_date: date | None = None  # as the operator gave it: identical requests join one run


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    after: int | None = None  # a page of the run's accounts: those with a client id above this


@dataclass(frozen=True)
class QueueRun:
    """The automation function, to itself: queue the jobs of a run it accepted (asynchronously)."""

    run_id: str


@dataclass(frozen=True)
class MarkPaid:
    number: str
    reference: str


@dataclass(frozen=True)
class Rebill:
    client_id: int
    period: Period


Command = Daily | InvoiceMonth | RunStatus | MarkPaid | Rebill | QueueRun
_OPERATOR_KEYS = {
    "invoicingDate": {"invoicingDate", "dryRun"},
    "runStatus": {"runStatus", "after"},
    "markPaid": {"markPaid", "reference"},
    "rebill": {"rebill"},
    "queueRun": {"queueRun"},
}
# {"rebill": {"client": 123, "period": "2022-10"}}; later commands on one invoice may extend this object.
_REBILL_KEYS = {"client", "period"}
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII only: \d takes any Unicode digit


def parse(event: Any, *, timezone: str, now: datetime) -> Command:
    if not isinstance(event, dict):
        raise PayloadError("the payload must be a JSON object")
    if event.get("source") == "aws.events" or "schedule" in event:
        return Daily(local_date(_scheduled_time(event, now), timezone))
    kinds = [key for key in _OPERATOR_KEYS if key in event]
    if len(kinds) != 1:
        raise PayloadError(
            "the payload must have exactly one of: invoicingDate (with optional dryRun), runStatus (with "
            f"optional after), markPaid (with reference), rebill; got keys {sorted(event)}"
        )
    kind = kinds[0]
    unknown = set(event) - _OPERATOR_KEYS[kind]
    if unknown:
        raise PayloadError(f"unknown keys {sorted(unknown)}; {kind} accepts {sorted(_OPERATOR_KEYS[kind])}")
    if kind == "invoicingDate":
        return _invoice_month(event, timezone, now)
    if kind == "runStatus":
        after = event.get("after")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise PayloadError(f"after must be a client id (a whole number), got {after!r}")
        return RunStatus(_text(event, "runStatus"), after)
    if kind == "rebill":
        return _rebill(event["rebill"], timezone, now)
    if kind == "queueRun":
        return QueueRun(_text(event, "queueRun"))
    return MarkPaid(_text(event, "markPaid"), _text(event, "reference"))


def _invoice_month(event: dict[str, Any], timezone: str, now: datetime) -> InvoiceMonth:
    raw = event["invoicingDate"]
    if not isinstance(raw, str):
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {raw!r}")
    try:
        invoicing_date = date.fromisoformat(raw)
    except ValueError as error:
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {raw!r}") from error
    if len(raw) != 10:
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {raw!r}")
    dry_run = event.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise PayloadError(f"dryRun must be true or false, got {dry_run!r}")
    period = month_before(invoicing_date, timezone)
    today = local_date(now, timezone)
    if period.end >= today:
        raise PayloadError(
            f"invoicingDate {raw} would invoice {period.label}, which has not ended yet in {timezone} "
            f"(today is {today})"
        )
    return InvoiceMonth(period, dry_run, invoicing_date)


def _rebill(body: Any, timezone: str, now: datetime) -> Rebill:
    if not isinstance(body, dict) or set(body) != _REBILL_KEYS:
        raise PayloadError(
            f'rebill must be an object like {{"client": 123, "period": "2022-10"}}, got {body!r}'
        )
    client = body["client"]
    if not isinstance(client, int) or isinstance(client, bool) or client < 1:
        raise PayloadError(f"rebill client must be a client id (a positive integer), got {client!r}")
    raw = body["period"]
    match = _MONTH.fullmatch(raw) if isinstance(raw, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise PayloadError(f"rebill period must be a month like 2022-10, got {raw!r}")
    year, month = int(match.group(1)), int(match.group(2))
    start = date(year, month, 1)
    period = Period(
        start, start.replace(day=monthrange(year, month)[1]), timezone
    )  # 9999-12 has no next month
    today = local_date(now, timezone)
    if period.end >= today:
        raise PayloadError(f"rebill period {period.label} has not ended yet in {timezone} (today is {today})")
    return Rebill(client, period)


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise PayloadError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _scheduled_time(event: dict[str, Any], now: datetime) -> datetime:
    raw = event.get("time") or event.get("scheduledTime")
    if not raw:
        return now
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as error:
        raise PayloadError(f"scheduled time {raw!r} is not a timestamp") from error
