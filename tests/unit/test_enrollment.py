"""Sign-up and verification against in-memory ports: the rules, in milliseconds."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from postpay.config import Settings
from postpay.errors import RateLimited, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import AccountStatus, SignupForm
from postpay.security import hash_password
from postpay.services.enrollment import Enrollment, TermsNotAccepted, WrongSignupPassword
from postpay.services.guard import PasswordGuard
from tests.unit.fakes import FakeAccounts, FakeCounters, FakeMailer, FakeSessions, FixedClock
from tests.unit.test_config import BASE

PASSWORD = "correct horse battery staple"


class World:
    def __init__(self, **env: str) -> None:
        self.settings = Settings.from_env({**BASE, **env})
        self.accounts, self.sessions, self.counters = FakeAccounts(), FakeSessions(), FakeCounters()
        self.mailer, self.clock = FakeMailer(), FixedClock()
        guard = PasswordGuard(settings=self.settings, counters=self.counters, clock=self.clock)
        self.enrollment = Enrollment(
            settings=self.settings,
            accounts=self.accounts,
            sessions=self.sessions,
            counters=self.counters,
            mailer=self.mailer,
            clock=self.clock,
            guard=guard,
        )

    def sign_up(
        self, email: str = "ada@example.com", *, password: str = PASSWORD, ip: str = "192.0.2.1"
    ) -> None:
        form = SignupForm(name="Ada", company="Analytical", email=email, password=password)
        self.enrollment.signup(form, source_ip=ip)

    def link_token(self, email: str = "ada@example.com") -> str:
        """The token of the newest verification link mailed to ``email``."""
        link = [m for m in self.mailer.sent if m.to == email and m.template == "verify"][-1].context["link"]
        return parse_qs(urlparse(str(link)).query)["token"][0]

    def accept(self, token: str, *, password: str = PASSWORD, browser: str = "browser-1"):
        return self.enrollment.accept(
            token, password, {"tos"}, source_ip="192.0.2.1", user_agent="test", browser=browser
        )


@pytest.fixture
def world() -> World:
    return World()


def test_a_sign_up_records_an_attempt_and_mails_its_link_but_creates_no_account(world):
    # When someone signs up
    world.sign_up()
    # Then a verification link is mailed, and the address has no account until it is followed
    assert world.mailer.to("ada@example.com") == ["verify"]
    assert world.accounts.get_account("ada@example.com") is None
    assert world.enrollment.check_token(world.link_token()).name == "Ada"


def test_following_the_link_creates_the_verified_account_with_its_acceptances(world):
    # Given a sign-up
    world.sign_up()
    # When its link is followed and the terms accepted with the same password
    account = world.accept(world.link_token())
    # Then the account is verified, with a client id from the counter and one acceptance per document
    assert account.status is AccountStatus.VERIFIED and account.client_id == 1
    assert [(a.client_id, a.document) for a in world.accounts.acceptances(1)] == [(1, "tos")]


def test_a_link_works_once_and_the_same_browser_is_told_it_already_used_it(world):
    # Given a link already used
    world.sign_up()
    token = world.link_token()
    world.accept(token, browser="browser-1")
    # When it is used again, by the same browser and by another
    with pytest.raises(TokenUsed) as same:
        world.accept(token, browser="browser-1")
    with pytest.raises(TokenUsed) as other:
        world.accept(token, browser="browser-2")
    # Then both are refused; only the first browser hears "you already confirmed"
    assert same.value.same_browser and not other.value.same_browser
    assert world.counters.values["client_id"] == 1


def test_a_known_address_is_mailed_already_registered_and_gets_no_new_attempt(world):
    # Given a verified account
    world.sign_up()
    world.accept(world.link_token())
    attempts = len(world.accounts.tokens)
    # When the address signs up again
    world.sign_up()
    # Then the owner is told, and no attempt is recorded
    assert world.mailer.to("ada@example.com") == ["verify", "already_registered"]
    assert len(world.accounts.tokens) == attempts


def test_of_two_attempts_for_one_address_the_first_accepted_wins_and_the_other_is_void(world):
    # Given two sign-ups for the same address, with different passwords
    world.sign_up(password=PASSWORD)
    first = world.link_token()
    world.sign_up(password="another long password")
    second = world.link_token()
    # When the second is accepted, then the first
    world.accept(second, password="another long password")
    with pytest.raises(TokenUsed):
        world.accept(first, password=PASSWORD)
    # Then one account exists, with the second attempt's password
    assert len(world.accounts.accounts) == 1
    assert world.counters.values["client_id"] == 1  # the second accept stops before a client id is taken


def test_the_terms_page_wants_the_password_chosen_at_sign_up(world):
    world.sign_up()
    with pytest.raises(WrongSignupPassword):
        world.accept(world.link_token(), password="not the password at all")
    assert world.accounts.get_account("ada@example.com") is None


def test_every_required_document_must_be_accepted(world):
    world.sign_up()
    with pytest.raises(TermsNotAccepted):
        world.enrollment.accept(
            world.link_token(), PASSWORD, set(), source_ip="192.0.2.1", user_agent="t", browser="b"
        )


def test_an_expired_or_unknown_link_is_refused(world):
    world.sign_up()
    token = world.link_token()
    world.clock.advance(hours=world.settings.verify_token_ttl_hours, seconds=1)
    with pytest.raises(TokenExpired):
        world.enrollment.check_token(token)
    with pytest.raises(TokenInvalid):
        world.enrollment.check_token("x" * 43)


def test_verification_ends_sessions_already_open_for_the_address(world):
    # Given a session for the address from before it was proved (the earlier model's pending accounts)
    world.sessions.create_session(
        "planted",
        email="ada@example.com",
        now=world.clock.now(),
        idle=timedelta(hours=1),
        absolute=timedelta(days=1),
    )
    # When the owner verifies
    world.sign_up()
    world.accept(world.link_token())
    # Then that session is gone
    assert world.sessions.get_session("planted", world.clock.now()) is None


def test_sign_ups_from_one_source_are_limited_per_hour():
    world = World(SIGNUPS_PER_IP_PER_HOUR="2")
    world.sign_up("a@example.com")
    world.sign_up("b@example.com")
    with pytest.raises(RateLimited):
        world.sign_up("c@example.com")
    world.clock.advance(hours=1)
    world.sign_up("c@example.com")  # the next window starts again


def test_verification_emails_to_one_address_are_limited_per_hour():
    world = World(SIGNUP_EMAILS_PER_ADDRESS_PER_HOUR="1")
    world.sign_up(ip="192.0.2.1")
    with pytest.raises(RateLimited):
        world.sign_up(ip="192.0.2.2")
    assert world.mailer.to("ada@example.com") == ["verify"]


def test_an_account_of_the_earlier_pending_model_is_replaced_by_verification(world):
    # Given a pending account item of the earlier model
    from datetime import datetime

    from postpay.models import Account

    world.accounts.add(
        Account(
            email="ada@example.com",
            client_id=99,
            name="Old",
            company="",
            password_hash=hash_password("whatever it was then"),
            status=AccountStatus.PENDING,
            created_at=datetime(2025, 1, 1, tzinfo=world.clock.now().tzinfo),
        )
    )
    # When the address signs up and verifies
    world.sign_up()
    account = world.accept(world.link_token())
    # Then the verified account replaces it
    assert account.status is AccountStatus.VERIFIED and account.name == "Ada"
