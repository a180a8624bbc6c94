"""Login sessions: a random id in a cookie, only its hash stored, idle and absolute expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from postpay.clock import Clock
from postpay.config import Settings
from postpay.models import Session
from postpay.security import new_token, token_hash

if TYPE_CHECKING:
    from postpay.ports import SessionStore

SESSION_COOKIE = "__Host-session"
# Refresh the idle expiry at most this often, so a page view is not a write.
_TOUCH_EVERY = timedelta(minutes=5)


class Sessions:
    def __init__(self, *, settings: Settings, store: SessionStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.idle = timedelta(hours=settings.session_idle_hours)
        self.absolute = timedelta(days=settings.session_absolute_days)

    def start(self, email: str) -> str:
        """A new session; returns the id for the cookie (never stored)."""
        session_id = new_token()
        self.store.create_session(
            token_hash(session_id), email=email, now=self.clock.now(), idle=self.idle, absolute=self.absolute
        )
        return session_id

    def current(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        now = self.clock.now()
        session = self.store.get_session(token_hash(session_id), now)
        if session is not None and now - session.last_seen_at >= _TOUCH_EVERY:
            self.store.touch_session(token_hash(session_id), now, self.idle)
        return session

    def live(self, session_id: str | None) -> bool:
        """Whether the cookie names a live session, without touching it (for the navigation)."""
        if not session_id or len(session_id) > 128:
            return False
        return self.store.get_session(token_hash(session_id), self.clock.now()) is not None

    def end(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 128:
            self.store.delete_session(token_hash(session_id))

    @property
    def cookie_max_age(self) -> int:
        return int(self.absolute.total_seconds())
