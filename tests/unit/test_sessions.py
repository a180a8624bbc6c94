"""Login sessions against an in-memory store: idle and absolute expiry, touches, ending."""

from __future__ import annotations

import pytest

from postpay.config import Settings
from postpay.security import token_hash
from postpay.services.sessions import Sessions
from tests.unit.fakes import FakeSessions, FixedClock
from tests.unit.test_config import BASE


@pytest.fixture
def world():
    store, clock = FakeSessions(), FixedClock()
    settings = Settings.from_env({**BASE, "SESSION_IDLE_HOURS": "2", "SESSION_ABSOLUTE_DAYS": "1"})
    return Sessions(settings=settings, store=store, clock=clock), store, clock


def test_only_the_hash_of_a_session_id_is_stored(world):
    sessions, store, _ = world
    session_id = sessions.start("ada@example.com")
    assert session_id not in store.sessions and token_hash(session_id) in store.sessions
    assert sessions.current(session_id).email == "ada@example.com"


def test_an_idle_session_expires_and_use_keeps_it_alive(world):
    sessions, _, clock = world
    session_id = sessions.start("ada@example.com")
    for _ in range(5):  # used every 90 minutes: never idle for 2 hours
        clock.advance(minutes=90)
        assert sessions.current(session_id) is not None
    clock.advance(hours=2, seconds=1)
    assert sessions.current(session_id) is None


def test_a_session_ends_at_its_absolute_expiry_however_used(world):
    sessions, _, clock = world
    session_id = sessions.start("ada@example.com")
    for _ in range(23):
        clock.advance(hours=1)
        assert sessions.current(session_id) is not None
    clock.advance(hours=1)
    assert sessions.current(session_id) is None and not sessions.live(session_id)


def test_a_page_view_is_not_a_write_within_five_minutes(world):
    sessions, store, clock = world
    session_id = sessions.start("ada@example.com")
    clock.advance(minutes=4)
    sessions.current(session_id)
    assert store.touches == 0
    clock.advance(minutes=2)
    sessions.current(session_id)
    assert store.touches == 1


def test_logging_out_ends_the_session_and_bad_cookies_are_nobody(world):
    sessions, _, _ = world
    session_id = sessions.start("ada@example.com")
    sessions.end(session_id)
    assert sessions.current(session_id) is None
    assert sessions.current(None) is None and sessions.current("x" * 200) is None and not sessions.live("")
