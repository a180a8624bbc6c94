from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postpay.billing.commands import Daily, InvoiceMonth, MarkPaid, PayloadError, RunStatus, parse

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_operator_invoice_month():
    command = parse({"invoicingDate": "2022-11-01"}, timezone="UTC", now=NOW)
    assert isinstance(command, InvoiceMonth) and not command.dry_run
    assert (command.period.start, command.period.end) == (date(2022, 10, 1), date(2022, 10, 31))
    assert parse({"invoicingDate": "2022-11-01", "dryRun": True}, timezone="UTC", now=NOW).dry_run  # type: ignore[union-attr]


def test_last_month_can_be_invoiced_once_it_has_ended_locally():
    assert isinstance(parse({"invoicingDate": "2026-11-01"}, timezone="UTC", now=NOW), InvoiceMonth)
    with pytest.raises(PayloadError, match="November 2026, which has not ended"):
        parse({"invoicingDate": "2026-12-01"}, timezone="UTC", now=NOW)
    # 2026-11-30T23:30Z is already December 1st in Berlin: November has ended there
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert isinstance(
        parse({"invoicingDate": "2026-12-01"}, timezone="Europe/Berlin", now=late), InvoiceMonth
    )
    with pytest.raises(PayloadError):
        parse({"invoicingDate": "2026-12-01"}, timezone="UTC", now=late)


def test_other_commands():
    assert parse({"runStatus": "scheduled-2022-10"}, timezone="UTC", now=NOW) == RunStatus(
        "scheduled-2022-10"
    )
    assert parse({"markPaid": "INV-000001", "reference": "r"}, timezone="UTC", now=NOW) == MarkPaid(
        "INV-000001", "r"
    )
    assert parse({"source": "aws.events", "time": "2022-11-01T00:05:00Z"}, timezone="UTC", now=NOW) == Daily(
        date(2022, 11, 1)
    )


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=12), st.booleans(), st.integers())))
def test_any_payload_is_a_command_or_a_clear_refusal(payload):
    try:
        parse(payload, timezone="UTC", now=NOW)
    except PayloadError as error:
        assert str(error)


@pytest.mark.parametrize("payload", [[], "2022-11-01", None, 5])
def test_non_object_payloads_are_refused(payload):
    with pytest.raises(PayloadError, match="JSON object"):
        parse(payload, timezone="UTC", now=NOW)
