from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from postpay import money
from postpay.billing.invoicing import UsageError, invoice_lines
from postpay.models import Pricing
from postpay.periods import Period, local_date, month_before

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]
prices = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000"), places=6)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KWD"])


def test_rounding_is_half_up_to_the_minor_unit():
    assert money.line_amount(4900, Decimal("0.001"), "USD") == Decimal("4.90")
    assert money.line_amount(5, Decimal("0.001"), "USD") == Decimal("0.01")  # 0.005 -> 0.01
    assert money.line_amount(4, Decimal("0.001"), "USD") == Decimal("0.00")
    assert money.line_amount(3192, Decimal("0.00091"), "EUR") == Decimal("2.90")  # 2.90472
    assert money.line_amount(1500, Decimal("0.5"), "JPY") == Decimal("750")
    assert money.line_amount(1, Decimal("0.0005"), "KWD") == Decimal("0.001")


@given(st.integers(min_value=0, max_value=10**9), prices, currencies)
def test_line_amount_is_exact_and_within_half_a_minor_unit(tokens, price, currency):
    amount = money.line_amount(tokens, price, currency)
    assert amount.as_tuple().exponent == -money.minor_unit(currency)
    assert abs(amount - Decimal(tokens) * price) <= money.quantum(currency) / 2


@given(st.lists(st.integers(min_value=0, max_value=10**7), max_size=30), prices, currencies)
def test_total_is_the_sum_of_the_lines(tokens, price, currency):
    usage = {
        "servers": [
            {"id": i, "name": f"s{i}", "plan": {"name": "p"}, "hours": 1, "tokens": t}
            for i, t in enumerate(tokens)
        ],
        "total_tokens": sum(tokens),
    }
    lines = invoice_lines(usage, Pricing(price, currency))
    assert [ln.tokens for ln in lines] == [t for t in tokens if t > 0]
    assert money.total([ln.amount for ln in lines], currency) == sum((ln.amount for ln in lines), Decimal(0))


@pytest.mark.parametrize("tokens", [-1, 1.5, "12", True, None])
def test_usage_with_non_integer_tokens_is_refused(tokens):
    with pytest.raises(UsageError):
        invoice_lines({"servers": [{"id": 1, "tokens": tokens}]}, Pricing(Decimal("0.001"), "USD"))


def test_usage_whose_total_disagrees_with_its_servers_is_refused():
    with pytest.raises(UsageError, match="total_tokens"):
        invoice_lines({"servers": [{"id": 1, "tokens": 5}], "total_tokens": 6}, Pricing(Decimal("1"), "USD"))


def test_the_example_from_the_brief():
    assert month_before(date(2022, 11, 1), "UTC") == Period(date(2022, 10, 1), date(2022, 10, 31), "UTC")


@given(st.dates(min_value=date(1971, 1, 1), max_value=date(2100, 12, 31)), st.sampled_from(ZONES))
def test_month_before_is_the_whole_previous_calendar_month(day, zone):
    period = month_before(day, zone)
    assert period.start.day == 1
    assert (period.end + timedelta(days=1)) == day.replace(day=1)
    assert period.start.month == period.end.month and period.end < day
    assert 28 <= (period.end - period.start).days + 1 <= 31
    assert period.key == f"{period.start:%Y-%m}"


@given(st.dates(min_value=date(1971, 2, 1), max_value=date(2100, 12, 31)), st.sampled_from(ZONES))
# Kiritimati moved from -10:40 to -10:00 at midnight on 1 October 1979: September ends where that midnight
# began (the 40 minutes after it never happened), so its last instant still has the old offset
@example(date(1979, 10, 1), "Pacific/Kiritimati")
def test_consecutive_periods_tile_time_without_gap_or_overlap(day, zone):
    this = month_before(day, zone)
    previous = month_before(this.start, zone)
    assert previous.ends_at() == this.starts_at()
    hours = (this.ends_at() - this.starts_at()).total_seconds() / 3600
    days = (this.end - this.start).days + 1
    # Daylight saving moves an hour in or out; a zone that changed its offset moves more (Pacific/Kiritimati
    # skipped 31 December 1994 whole): the month lasts its days less the change of the zone's UTC offset
    # between its first instant and its last (the one before the next month starts).
    start, last = this.starts_at(), this.ends_at() - timedelta(microseconds=1)
    tz = ZoneInfo(zone)
    shift = (last.astimezone(tz).utcoffset() - start.astimezone(tz).utcoffset()).total_seconds() / 3600  # type: ignore[operator]
    assert hours == days * 24 - shift


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(ZONES),
)
def test_local_date_follows_the_zone(moment, zone):
    from zoneinfo import ZoneInfo

    assert local_date(moment, zone) == moment.astimezone(ZoneInfo(zone)).date()
