from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postpay.billing.automation import handlers
from postpay.billing.commands import (
    PAYLOADS,
    AccountLookup,
    Daily,
    InvoiceMonth,
    ListInvoices,
    MarkPaid,
    PayloadError,
    Payment,
    Rebill,
    ResendInvoice,
    RunStatus,
    parse,
)

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
        (Payment("INV-000001", "r"),)
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


def test_rebill_names_one_client_and_one_ended_month():
    command = parse({"rebill": {"client": 123, "period": "2022-10"}}, timezone="UTC", now=NOW)
    assert isinstance(command, Rebill) and command.client_id == 123
    assert (command.period.start, command.period.end) == (date(2022, 10, 1), date(2022, 10, 31))
    december = parse({"rebill": {"client": 1, "period": "2021-12"}}, timezone="UTC", now=NOW)
    assert december.period.end == date(2021, 12, 31)  # type: ignore[union-attr]
    assert (
        parse({"rebill": {"client": 1, "period": "2026-10"}}, timezone="UTC", now=NOW).period.key == "2026-10"
    )  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"rebill": {"client": 123, "period": "2026-11"}}, "November 2026 has not ended yet in UTC"),
        ({"rebill": {"client": 123, "period": "2099-01"}}, "has not ended yet"),
        ({"rebill": {"client": 123, "period": "2022-13"}}, "period must be a month like 2022-10"),
        ({"rebill": {"client": 123, "period": "2022-1"}}, "period must be a month like 2022-10"),
        ({"rebill": {"client": 123, "period": "2022-10-01"}}, "period must be a month like 2022-10"),
        ({"rebill": {"client": 123, "period": 202210}}, "period must be a month like 2022-10"),
        ({"rebill": {"client": "12a", "period": "2022-10"}}, "client must be a client id"),
        ({"rebill": {"client": True, "period": "2022-10"}}, "client must be a client id"),
        ({"rebill": {"client": 0, "period": "2022-10"}}, "client must be a client id"),
        ({"rebill": {"client": 123}}, "rebill must be an object like"),
        ({"rebill": {"client": 123, "period": "2022-10", "dryRun": True}}, "rebill must be an object like"),
        ({"rebill": [123, "2022-10"]}, "rebill must be an object like"),
        ({"rebill": {"client": 123, "period": "2022-10"}, "dryRun": True}, "unknown keys ['dryRun']"),
        ({"rebill": {"client": 123, "period": "9999-12"}}, "December 9999 has not ended yet"),
        ({"rebill": {"client": 123, "period": "\uff12\uff10\uff12\uff12-10"}}, "period must be a month like"),
        ({"rebill": {"client": 123, "period": "2022-\u0661\u0660"}}, "period must be a month like"),
    ],
)
def test_malformed_rebills_are_refused_with_a_message(payload, message):
    with pytest.raises(PayloadError) as error:
        parse(payload, timezone="UTC", now=NOW)
    assert message in str(error.value)


def test_a_rebill_of_the_month_that_just_ended_depends_on_the_billing_time_zone():
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already December 1st in Berlin
    assert isinstance(
        parse({"rebill": {"client": 1, "period": "2026-11"}}, timezone="Europe/Berlin", now=late), Rebill
    )
    with pytest.raises(PayloadError, match="has not ended"):
        parse({"rebill": {"client": 1, "period": "2026-11"}}, timezone="UTC", now=late)


@given(
    st.one_of(st.integers(), st.text(max_size=4)),
    st.one_of(st.from_regex(r"[0-9]{4}-[0-9]{2}", fullmatch=True), st.from_regex(r"\d{4}-\d{2}"), st.text()),
)
def test_any_rebill_is_a_rebill_of_an_ended_month_or_a_clear_refusal(client, period):
    try:
        command = parse({"rebill": {"client": client, "period": period}}, timezone="UTC", now=NOW)
    except PayloadError as error:
        assert str(error)
    else:
        assert isinstance(command, Rebill) and command.period.end < NOW.date()
        assert command.period.start == date(int(period[:4]), int(period[5:]), 1)


def test_the_operator_desk_payloads():
    assert parse({"account": "A@Example.com"}, timezone="UTC", now=NOW) == AccountLookup(
        "a@example.com", None
    )
    assert parse({"account": 42}, timezone="UTC", now=NOW) == AccountLookup(None, 42)
    assert parse({"account": "42"}, timezone="UTC", now=NOW) == AccountLookup(None, 42)
    assert parse({"listInvoices": {}}, timezone="UTC", now=NOW) == ListInvoices(None, None, None, 100, None)
    assert parse(
        {
            "listInvoices": {
                "status": "overdue",
                "period": "2022-10",
                "client": 7,
                "limit": 5,
                "after": "INV-000009",
            }
        },
        timezone="UTC",
        now=NOW,
    ) == ListInvoices("overdue", "2022-10", 7, 5, "INV-000009")
    assert parse({"resendInvoice": "INV-000001"}, timezone="UTC", now=NOW) == ResendInvoice("INV-000001")
    assert parse(
        {"markPaid": [{"invoice": "INV-1", "reference": "a"}, {"invoice": "INV-2", "reference": "b"}]},
        timezone="UTC",
        now=NOW,
    ) == MarkPaid((Payment("INV-1", "a"), Payment("INV-2", "b")))
    assert parse({"schedule": "daily"}, timezone="UTC", now=NOW) == Daily(date(2026, 11, 25), scheduled=False)
    assert parse(
        {"schedule": "daily", "scheduledTime": "2022-11-01T00:05:00Z"}, timezone="UTC", now=NOW
    ) == Daily(date(2022, 11, 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"account": ""}, "account must be an email address or a client id"),
        ({"account": 0}, "account must be an email address or a client id"),
        ({"account": True}, "account must be an email address or a client id"),
        ({"listInvoices": {"status": "late"}}, "status must be one of unpaid, overdue, paid, carried"),
        ({"listInvoices": {"period": "2022-1"}}, "period must be a month like 2022-10"),
        ({"listInvoices": {"client": "7a"}}, "client must be a client id"),
        ({"listInvoices": {"limit": 0}}, "limit must be an integer from 1 to 1000"),
        ({"listInvoices": {"limit": 1001}}, "limit must be an integer from 1 to 1000"),
        ({"listInvoices": {"after": 3}}, "after must be the cursor"),
        ({"listInvoices": {"sort": "number"}}, "listInvoices must be an object with optional"),
        ({"listInvoices": "unpaid"}, "listInvoices must be an object with optional"),
        ({"resendInvoice": ""}, "resendInvoice must be a non-empty string"),
        ({"resendInvoice": "INV-1", "to": "x@example.com"}, "unknown keys ['to']"),
        ({"markPaid": []}, "markPaid must be an invoice number or a list"),
        ({"markPaid": [{"invoice": "INV-1"}]}, "markPaid[0] must be an object like"),
        ({"markPaid": [{"invoice": "INV-1", "reference": ""}]}, "markPaid[0].reference must be a non-empty"),
        ({"markPaid": [{"invoice": "INV-1", "reference": "r"}], "reference": "r"}, "a reference per payment"),
        (
            {"markPaid": [{"invoice": "INV-1", "reference": "a"}, {"invoice": "INV-1", "reference": "b"}]},
            "markPaid names INV-1 more than once",
        ),
        ({"schedule": "hourly"}, 'schedule must be "daily"'),
        ({"account": 1, "resendInvoice": "INV-1"}, "exactly one of"),
    ],
)
def test_malformed_desk_payloads_are_refused_with_a_message(payload, message):
    with pytest.raises(PayloadError) as error:
        parse(payload, timezone="UTC", now=NOW)
    assert message in str(error.value)


def test_every_payload_has_a_handler():
    # one example of each payload of the table parses to a command its handler table knows
    examples = {
        "schedule": {"schedule": "daily"},
        "invoicingDate": {"invoicingDate": "2022-11-01"},
        "runStatus": {"runStatus": "r"},
        "queueRun": {"queueRun": "r"},
        "markPaid": {"markPaid": "INV-1", "reference": "r"},
        "rebill": {"rebill": {"client": 1, "period": "2022-10"}},
        "account": {"account": 1},
        "listInvoices": {"listInvoices": {}},
        "resendInvoice": {"resendInvoice": "INV-1"},
        "voidInvoice": {"voidInvoice": "INV-1", "reason": "r"},
        "exportInvoices": {"exportInvoices": "2022-10"},
        "refund": {"refund": "INV-1", "amount": "5.00"},
    }
    assert set(examples) == set(PAYLOADS)
    assert {type(parse(e, timezone="UTC", now=NOW)) for e in examples.values()} == set(handlers())


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        ({"schedule": None}, "got null"),
        ({"invoicingDate": "2022-11-01", "dryRun": "yes"}, 'got "yes"'),
        ({"listInvoices": {"limit": True}}, "got true"),
        ({"rebill": {"client": {"client": 3}, "period": "2022-10"}}, 'got {"client": 3}'),
    ],
)
def test_refusals_show_the_value_as_json_not_a_python_repr(payload, shown):
    with pytest.raises(PayloadError) as refused:
        parse(payload, timezone="UTC", now=NOW)
    assert str(refused.value).endswith(shown), str(refused.value)


@pytest.mark.parametrize("client", [3, "3", " 3 "])
def test_every_payload_takes_a_client_id_as_an_integer_or_its_digits(client):
    account = parse({"account": client}, timezone="UTC", now=NOW)
    listed = parse({"listInvoices": {"client": client}}, timezone="UTC", now=NOW)
    rebill = parse({"rebill": {"client": client, "period": "2022-10"}}, timezone="UTC", now=NOW)
    assert account.client_id == listed.client_id == rebill.client_id == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("client", [0, -1, "0", "-3", "3.0", "٣", True, 3.0, "1" * 21])
def test_no_payload_takes_anything_else_as_a_client_id(client):
    for payload in (
        {"listInvoices": {"client": client}},
        {"rebill": {"client": client, "period": "2022-10"}},
    ):
        with pytest.raises(PayloadError, match="must be a client id"):
            parse(payload, timezone="UTC", now=NOW)
