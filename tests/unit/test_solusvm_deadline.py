"""A page's SolusVM calls share one deadline, retries and backoff included (issue #8, finding 7)."""

from __future__ import annotations

import pytest
import requests

from postpay.adapters.solusvm import SolusVMClient
from postpay.errors import SolusUnavailable


class SlowSolus:
    """A requests session against a SolusVM that takes ``seconds`` (or the whole timeout) to answer 503."""

    def __init__(self, clock: list[float], seconds: float | None = None, status: int = 503) -> None:
        self.clock = clock
        self.seconds = seconds
        self.status = status
        self.calls: list[tuple[str, tuple[float, float]]] = []

    def request(
        self, method: str, url: str, *, timeout: tuple[float, float], **_: object
    ) -> requests.Response:
        self.calls.append((method, timeout))
        if self.seconds is None or self.seconds > timeout[1]:
            self.clock[0] += timeout[1]
            raise requests.ReadTimeout("Read timed out.")
        self.clock[0] += self.seconds
        response = requests.Response()
        response.status_code = self.status
        response._content = b"<html>busy</html>"
        return response


def _client(session: SlowSolus, clock: list[float]) -> SolusVMClient:
    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return SolusVMClient(
        "https://solus.example/api/v1/",
        lambda: "api-token",
        timeout_seconds=10,
        session=session,  # type: ignore[arg-type]
        monotonic=lambda: clock[0],
        sleep=sleep,
    )


def test_slow_5xx_answers_are_retried_only_within_the_deadline():
    # Given SolusVM answers 503 after 9 s, every time
    clock = [0.0]
    session = SlowSolus(clock, seconds=9)
    client = _client(session, clock)
    # When a page asks with an 8 s budget
    with client.deadline(8), pytest.raises(SolusUnavailable):
        client.find_user_by_email("ada@example.com")
    # Then it gave up within the budget, never waiting past it
    assert clock[0] <= 8.0
    assert all(timeout[1] <= 8.0 for _, timeout in session.calls)


def test_every_call_of_a_page_shares_the_budget():
    clock = [0.0]
    session = SlowSolus(clock, seconds=2.5)
    client = _client(session, clock)
    with client.deadline(8):
        for _ in range(5):
            with pytest.raises(SolusUnavailable):
                client.get_user(1)
    assert clock[0] <= 8.0 and len(session.calls) <= 4


def test_without_a_deadline_the_retry_policy_is_unchanged():
    # 5xx on a GET: the first attempt and two retries; a POST is never retried; a read timeout neither
    clock = [0.0]
    session = SlowSolus(clock, seconds=0.1)
    client = _client(session, clock)
    with pytest.raises(SolusUnavailable):
        client.get_user(1)
    assert [m for m, _ in session.calls] == ["GET", "GET", "GET"]
    session.calls.clear()
    with pytest.raises(SolusUnavailable):
        client.one_time_login_token(1)
    assert [m for m, _ in session.calls] == ["POST"]
    session.calls.clear()
    session.seconds = None
    with pytest.raises(SolusUnavailable):
        client.get_user(1)
    assert [m for m, _ in session.calls] == ["GET"]
    assert session.calls[0][1] == (3.05, 10)
