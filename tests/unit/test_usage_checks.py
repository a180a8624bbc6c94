"""The usage answer is checked against the question before any money is computed (README, Invoicing)."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postpay.billing.invoicing import UsageError, UsageMismatch, check_usage, invoice_lines
from postpay.models import Pricing
from postpay.periods import Period

OCTOBER = Period(date(2022, 10, 1), date(2022, 10, 31), "UTC")
USER = 12


def server(server_id: int, tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": server_id,
        "uuid": f"uuid-{server_id}",
        "name": f"web-{server_id}",
        "is_deleted": False,
        "plan": {"id": 3, "name": "Small", "tokens_per_hour": 7, "tokens_per_month": 5000},
        "hours": 700,
        "tokens": tokens,
        **extra,
    }


def answer(servers: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """The reference's example answer: user 12, October 2022, consistent unless told otherwise."""
    servers = [server(101, 4900), server(102, 100)] if servers is None else servers
    data = {
        "user_id": USER,
        "date_from": "2022-10-01",
        "date_to": "2022-10-31",
        "servers": servers,
    }
    if "total_tokens" not in fields:
        data["total_tokens"] = sum(s["tokens"] for s in servers)
    data.update(fields)
    return {"data": data}


def refused(body: Any) -> UsageError:
    with pytest.raises(UsageError) as error:
        check_usage(body, user_id=USER, period=OCTOBER)
    return error.value


def test_the_reference_example_is_accepted_and_priced():
    data = check_usage(answer(), user_id=USER, period=OCTOBER)
    lines = invoice_lines(data, Pricing(Decimal("0.001"), "USD"))
    assert [(ln.server_id, ln.tokens, str(ln.amount)) for ln in lines] == [
        (101, 4900, "4.90"),
        (102, 100, "0.10"),
    ]


def test_no_usage_is_accepted_as_an_empty_answer():
    assert check_usage(answer([]), user_id=USER, period=OCTOBER)["total_tokens"] == 0


@pytest.mark.parametrize(
    ("fields", "field", "asked", "got"),
    [
        ({"user_id": 13}, "user_id", "12", "13"),
        ({"user_id": "12"}, "user_id", "12", "'12'"),
        ({"user_id": 12.0}, "user_id", "12", "12.0"),
        ({"user_id": None}, "user_id", "12", "None"),
        ({"date_from": "2022-09-01"}, "date_from", "'2022-10-01'", "'2022-09-01'"),
        ({"date_to": "2022-11-30"}, "date_to", "'2022-10-31'", "'2022-11-30'"),
        ({"date_from": "2022-10-01T00:00:00Z"}, "date_from", "'2022-10-01'", "'2022-10-01T00:00:00Z'"),
    ],
)
def test_an_answer_for_another_user_or_period_is_refused_naming_the_field_and_both_values(
    fields, field, asked, got
):
    error = refused(answer(**fields))
    assert isinstance(error, UsageMismatch) and error.field == field
    assert str(error) == f"usage {field}: expected {asked} (what was asked), got {got}"


def test_user_1_is_not_true():
    with pytest.raises(UsageMismatch, match=r"user_id: expected 1 .* got True"):
        check_usage(answer(user_id=True), user_id=1, period=OCTOBER)


@pytest.mark.parametrize("missing", ["user_id", "date_from", "date_to", "total_tokens", "servers"])
def test_an_answer_without_a_field_the_money_depends_on_is_refused(missing):
    body = answer()
    del body["data"][missing]
    error = refused(body)
    assert missing in str(error) and "absent" in str(error)


@pytest.mark.parametrize(
    ("total", "got"),
    [(5001, "5001"), (4999, "4999"), ("5000", "'5000'"), (5000.0, "5000.0"), (None, "None"), (True, "True")],
)
def test_a_total_that_is_not_the_integer_sum_of_the_servers_is_refused(total, got):
    error = refused(answer(total_tokens=total))
    assert str(error) == f"usage total_tokens: expected 5000 (the sum of the servers' tokens), got {got}"


@pytest.mark.parametrize("tokens", [-1, 1.5, 4900.0, "4900", True, None])
def test_a_server_whose_tokens_are_not_a_non_negative_integer_is_refused(tokens):
    servers = [server(101, 4900), server(102, 100)]
    servers[1]["tokens"] = tokens
    error = refused(answer(servers, total_tokens=4900))
    assert isinstance(error, UsageMismatch)
    assert error.field == "servers[1].tokens (server 102)" and error.got == repr(tokens)


def test_a_server_without_tokens_or_id_is_refused():
    without_tokens = server(101, 1)
    del without_tokens["tokens"]
    assert "servers[0].tokens" in str(refused(answer([without_tokens], total_tokens=0)))
    without_id = server(101, 1)
    del without_id["id"]
    assert "servers[0].id" in str(refused(answer([without_id])))
    assert "servers[0].id" in str(refused(answer([server("101", 1)])))  # type: ignore[arg-type]


def test_the_same_server_twice_is_refused_even_when_the_total_counts_it_twice():
    error = refused(answer([server(101, 4900), server(102, 1), server(101, 4900)]))
    assert str(error) == "usage servers[2].id: expected server ids that appear once, got 101 a second time"


def test_optional_display_fields_may_be_absent_or_null_but_not_of_another_type():
    bare = {"id": 101, "tokens": 700}
    [line] = invoice_lines(
        check_usage(answer([bare]), user_id=USER, period=OCTOBER), Pricing(Decimal(1), "USD")
    )
    assert (line.name, line.plan, line.hours, line.deleted) == ("server 101", "", 0, False)
    nulls = {
        "id": 101,
        "tokens": 700,
        "name": None,
        "plan": None,
        "hours": None,
        "is_deleted": None,
        "uuid": None,
    }
    check_usage(answer([nulls]), user_id=USER, period=OCTOBER)
    assert "hours" in str(refused(answer([server(101, 700, hours=-1)])))
    assert "hours" in str(refused(answer([server(101, 700, hours="700")])))
    assert "is_deleted" in str(refused(answer([server(101, 700, is_deleted="no")])))


@pytest.mark.parametrize("body", [None, [], {}, {"data": None}, {"data": []}, {"data": "x"}])
def test_an_answer_without_a_data_object_is_refused(body):
    assert "no data object" in str(refused(body))


# Property: an answer that is not exactly consistent with the question is refused -----------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10_000) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
server_ids = st.integers(1, 6)
tokens = st.integers(0, 10_000)


def exactly_consistent(body: Any) -> bool:
    """The rule, written independently of the code under test."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return False

    def integer(v: Any) -> bool:
        return type(v) is int

    if not (integer(data.get("user_id")) and data["user_id"] == USER):
        return False
    if data.get("date_from") != "2022-10-01" or data.get("date_to") != "2022-10-31":
        return False
    if type(data.get("date_from")) is not str or type(data.get("date_to")) is not str:
        return False
    servers = data.get("servers")
    if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
        return False
    ids = [s.get("id") for s in servers]
    if not all(integer(i) for i in ids) or len(set(ids)) != len(ids):
        return False
    if not all(integer(s.get("tokens")) and s["tokens"] >= 0 for s in servers):
        return False
    for s in servers:
        if s.get("hours") is not None and not (integer(s["hours"]) and s["hours"] >= 0):
            return False
        if s.get("is_deleted") is not None and type(s["is_deleted"]) is not bool:
            return False
    total = data.get("total_tokens")
    return integer(total) and total == sum(s["tokens"] for s in servers)


@st.composite
def near_answers(draw: st.DrawFn) -> dict[str, Any]:
    """A consistent answer, then zero or more random edits: a field replaced, removed or added."""
    servers = [
        {"id": draw(server_ids), "tokens": draw(tokens), "hours": draw(st.integers(0, 744))}
        for _ in range(draw(st.integers(0, 4)))
    ]
    body = answer(servers)
    data = body["data"]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["field", "server", "remove", "remove-server-field"]))
        if kind == "field":
            key = draw(st.sampled_from(["user_id", "date_from", "date_to", "total_tokens", "servers"]))
            data[key] = draw(
                json_values | st.sampled_from([11, 13, "12", 12.0, "2022-09-01", "2022-10-31", 0, True])
            )
        elif kind == "remove":
            data.pop(draw(st.sampled_from(sorted(data) or ["user_id"])), None)
        elif isinstance(data.get("servers"), list) and data["servers"]:
            target = draw(st.sampled_from(data["servers"]))
            if not isinstance(target, dict):
                continue
            key = draw(st.sampled_from(["id", "tokens", "hours", "is_deleted"]))
            if kind == "remove-server-field":
                target.pop(key, None)
            else:
                target[key] = draw(json_values | st.integers(-5, 6))
    return copy.deepcopy(body)


@given(near_answers())
def test_any_answer_is_accepted_exactly_when_it_is_consistent_with_the_question(body):
    if exactly_consistent(body):
        data = check_usage(body, user_id=USER, period=OCTOBER)
        lines = invoice_lines(data, Pricing(Decimal("0.001"), "USD"))
        assert sum(ln.tokens for ln in lines) == data["total_tokens"]
    else:
        with pytest.raises(UsageError) as error:
            check_usage(body, user_id=USER, period=OCTOBER)
        assert str(error.value).startswith("usage ")


@given(st.lists(st.tuples(server_ids, tokens), max_size=5), st.integers(-3, 3))
def test_a_total_off_by_anything_is_refused(pairs, delta):
    servers = [{"id": i, "tokens": t} for i, t in dict(pairs).items()]
    body = answer(servers, total_tokens=sum(t for _, t in dict(pairs).items()) + delta)
    if delta:
        with pytest.raises(UsageMismatch, match="total_tokens"):
            check_usage(body, user_id=USER, period=OCTOBER)
    else:
        check_usage(body, user_id=USER, period=OCTOBER)


# The worker: a refused answer ends the job at once, failed, with nothing written but its outcome ---------


class FakeBilling:
    def __init__(self, *, recordable: bool = True) -> None:
        self.recordable = recordable
        self.outcomes: dict[tuple[str, int], tuple[str, str | None]] = {}
        self.writes: list[str] = []

    def record_outcome(
        self, run_id: str, client_id: int, outcome: str, now: Any, *, reason: str = ""
    ) -> bool:
        if not self.recordable:
            return False
        self.outcomes[(run_id, client_id)] = (outcome, reason)
        return True

    def outcome_of(self, run_id: str, client_id: int) -> str | None:
        found = self.outcomes.get((run_id, client_id))
        return found[0] if found else None

    def billed(self, client_id: int, period_key: str) -> None:
        return None  # the period has no invoice yet

    def __getattr__(self, name: str) -> Any:  # issue, record_nothing, claim_email...: must not be called
        self.writes.append(name)
        raise AssertionError(f"{name} called for a refused answer")


class FakeSolus:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.calls = 0

    def usage(self, user_id: int, date_from: date, date_to: date) -> dict[str, Any]:
        self.calls += 1
        return self.body


class FixedClock:
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime(2022, 11, 1, 0, 5, tzinfo=UTC)


def invoicing_with(billing: FakeBilling, solus: FakeSolus) -> Any:
    from postpay.billing.invoicing import Invoicing

    return Invoicing(
        settings=None,  # type: ignore[arg-type]  # a refused answer never reaches settings
        accounts=None,  # type: ignore[arg-type]
        billing=billing,  # type: ignore[arg-type]
        solus=solus,
        mailer=None,  # type: ignore[arg-type]
        clock=FixedClock(),
        pricing=lambda: Pricing(Decimal("0.001"), "USD"),
        queue=None,
    )


def test_a_refused_answer_fails_the_job_on_its_first_attempt_and_writes_nothing_else():
    from postpay.billing.invoicing import Job

    billing, solus = FakeBilling(), FakeSolus(answer(user_id=13))
    job = Job("run-1", 7, "a@example.com", USER, OCTOBER)
    assert invoicing_with(billing, solus).process(job, final_attempt=False) == "failed"
    assert billing.outcomes[("run-1", 7)] == (
        "failed",
        "UsageMismatch: usage user_id: expected 12 (what was asked), got 13",
    )
    assert solus.calls == 1 and billing.writes == []


def test_a_refused_answer_whose_failure_cannot_be_recorded_is_retried():
    from postpay.billing.invoicing import Job

    billing = FakeBilling(recordable=False)
    job = Job("run-1", 7, "a@example.com", USER, OCTOBER)
    with pytest.raises(RuntimeError, match="could not be recorded"):
        invoicing_with(billing, FakeSolus(answer(total_tokens=1))).process(job, final_attempt=False)


def test_a_rebill_job_says_so_in_its_message_and_an_ordinary_one_does_not():
    from postpay.billing.invoicing import Job

    ordinary = Job("run-1", 7, "a@example.com", USER, OCTOBER)
    rebill = Job("rebill-2022-10-7-ab", 7, "a@example.com", USER, OCTOBER, rebill=True)
    assert "rebill" not in ordinary.message() and rebill.message()["rebill"] is True
    assert Job.from_message(ordinary.message()) == ordinary and Job.from_message(rebill.message()) == rebill
    assert not Job.from_message({**ordinary.message(), "rebill": "yes"}).rebill


@pytest.mark.parametrize("tokens", [2**63, 10**30, 10**40])
def test_a_token_count_no_64_bit_meter_can_give_is_refused_not_priced(tokens):
    # Beyond 2**63 - 1 the figure is no meter reading, and Decimal's 28 digits would round or fail the amount
    error = refused(answer([server(101, tokens)]))
    assert isinstance(error, UsageMismatch) and error.field == "servers[0].tokens (server 101)"
    assert str(error) == (
        f"usage servers[0].tokens (server 101): expected a non-negative integer up to 2**63 - 1, got {tokens}"
    )


def test_the_largest_64_bit_token_count_is_priced_exactly():
    [line] = invoice_lines(
        check_usage(answer([server(101, 2**63 - 1)]), user_id=USER, period=OCTOBER),
        Pricing(Decimal("0.000912345"), "USD"),
    )
    assert str(line.amount) == "8414897360964270.43"  # 8414897360964270.433637415, half-up to cents
