"""Log-in and password reset against in-memory ports."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest

from postpay.config import Settings
from postpay.errors import RateLimited, TokenInvalid, TokenUsed
from postpay.models import Account, AccountStatus, Pricing
from postpay.security import hash_password, verify_password
from postpay.services.client_area import ClientArea, LoginFailed
from postpay.services.guard import PasswordGuard
from tests.unit.fakes import FakeAccounts, FakeCounters, FakeMailer, FakeSessions, FakeSolus, FixedClock
from tests.unit.test_config import BASE

PASSWORD = "correct horse battery staple"


class World:
    def __init__(self) -> None:
        self.settings = Settings.from_env({**BASE, "LOGIN_FAILURES_PER_ACCOUNT": "3"})
        self.accounts, self.sessions, self.counters = FakeAccounts(), FakeSessions(), FakeCounters()
        self.mailer, self.clock = FakeMailer(), FixedClock()
        self.area = ClientArea(
            settings=self.settings,
            accounts=self.accounts,
            sessions=self.sessions,
            counters=self.counters,
            solus=FakeSolus(),
            mailer=self.mailer,
            clock=self.clock,
            pricing=lambda: Pricing(token_price=Decimal("0.01"), currency="EUR"),
            guard=PasswordGuard(settings=self.settings, counters=self.counters, clock=self.clock),
        )
        self.accounts.add(
            Account(
                email="ada@example.com",
                client_id=1,
                name="Ada",
                company="",
                password_hash=hash_password(PASSWORD),
                status=AccountStatus.ENROLLED,
                created_at=self.clock.now(),
            )
        )

    def reset_token(self) -> str:
        link = [m for m in self.mailer.sent if m.template == "reset"][-1].context["link"]
        return parse_qs(urlparse(str(link)).query)["token"][0]


@pytest.fixture
def world() -> World:
    return World()


def test_log_in_with_the_right_password_and_refusal_that_does_not_say_which_part_was_wrong(world):
    assert world.area.login("Ada@Example.com", PASSWORD, source_ip="192.0.2.1").client_id == 1
    with pytest.raises(LoginFailed):
        world.area.login("ada@example.com", "wrong password here", source_ip="192.0.2.1")
    with pytest.raises(LoginFailed):
        world.area.login("nobody@example.com", PASSWORD, source_ip="192.0.2.1")


def test_guessing_at_an_account_is_stopped_at_its_limit(world):
    for _ in range(3):
        with pytest.raises(LoginFailed):
            world.area.login("ada@example.com", "wrong password here", source_ip="192.0.2.1")
    with pytest.raises(RateLimited):
        world.area.login("ada@example.com", PASSWORD, source_ip="192.0.2.9")


def test_a_reset_link_sets_the_password_once_ends_sessions_and_lets_the_owner_in(world):
    # Given a locked account with an open session, and a reset link mailed to its owner
    world.sessions.create_session(
        "old",
        email="ada@example.com",
        now=world.clock.now(),
        idle=timedelta(hours=1),
        absolute=timedelta(days=1),
    )
    for _ in range(3):
        with pytest.raises(LoginFailed):
            world.area.login("ada@example.com", "wrong password here", source_ip="192.0.2.1")
    world.area.forgot("ada@example.com", source_ip="192.0.2.1")
    token = world.reset_token()
    # When the link is used
    world.area.reset(token, "a brand new long password", source_ip="192.0.2.1")
    # Then the new password works (the account's limit is forgiven), the sessions ended, the link is spent
    assert verify_password(
        "a brand new long password", world.accounts.get_account("ada@example.com").password_hash
    )
    assert world.area.login("ada@example.com", "a brand new long password", source_ip="192.0.2.1")
    assert "old" not in world.sessions.sessions
    with pytest.raises(TokenUsed):
        world.area.reset(token, "yet another long password", source_ip="192.0.2.1")


def test_only_the_newest_reset_link_works(world):
    world.area.forgot("ada@example.com", source_ip="192.0.2.1")
    first = world.reset_token()
    world.area.forgot("ada@example.com", source_ip="192.0.2.1")
    with pytest.raises(TokenInvalid):
        world.area.reset(first, "a brand new long password", source_ip="192.0.2.1")


def test_forgot_for_an_unknown_address_sends_nothing(world):
    world.area.forgot("nobody@example.com", source_ip="192.0.2.1")
    assert world.mailer.sent == []
