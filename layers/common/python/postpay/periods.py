"""Billing periods: calendar months in the billing time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month, inclusive dates, in ``timezone``."""

    start: date
    end: date
    timezone: str

    @property
    def key(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def label(self) -> str:
        return f"{self.start:%B %Y}"

    def ends_at(self) -> datetime:
        """The instant the period is over: local midnight after its last day, in UTC."""
        zone = ZoneInfo(self.timezone)
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)

    def starts_at(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=ZoneInfo(self.timezone)).astimezone(UTC)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "timezone": self.timezone}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Period:
        return cls(date.fromisoformat(data["start"]), date.fromisoformat(data["end"]), data["timezone"])


def month_before(invoicing_date: date, timezone: str) -> Period:
    """The calendar month before the one ``invoicing_date`` falls in (2022-11-01 -> October 2022)."""
    first_of_month = invoicing_date.replace(day=1)
    end = first_of_month - timedelta(days=1)
    return Period(end.replace(day=1), end, timezone)


def local_date(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()
