"""DynamoDB for login sessions: only the hash of a session id is stored, with idle and absolute expiry."""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.exceptions import PutError, UpdateError

from postpay.adapters.tables import SessionItem, conditional_failed
from postpay.adapters.tables import epoch as _epoch
from postpay.models import Session


class SessionsStore:
    def create_session(
        self,
        session_hash: str,
        *,
        email: str,
        now: datetime,
        idle: timedelta,
        absolute: timedelta,
    ) -> None:
        try:
            SessionItem(
                session_hash,
                email=email,
                created_at=now,
                last_seen_at=now,
                absolute_expires_at=_epoch(now + absolute),
                expires_at=_epoch(now + idle),
            ).save(condition=SessionItem.session_hash.does_not_exist())
        except PutError as error:  # a 256-bit collision: never, but never overwrite a session either
            raise RuntimeError("session id collision") from error

    def get_session(self, session_hash: str, now: datetime) -> Session | None:
        """A live session (neither idle nor absolute expiry passed; TTL deletion lags, so check here)."""
        try:
            item = SessionItem.get(session_hash, consistent_read=True)
        except SessionItem.DoesNotExist:
            return None
        if item.expires_at <= _epoch(now) or item.absolute_expires_at <= _epoch(now):
            return None
        return Session(email=item.email, created_at=item.created_at, last_seen_at=item.last_seen_at)

    def touch_session(self, session_hash: str, now: datetime, idle: timedelta) -> None:
        try:
            SessionItem(session_hash).update(
                actions=[SessionItem.last_seen_at.set(now), SessionItem.expires_at.set(_epoch(now + idle))],
                condition=SessionItem.session_hash.exists(),
            )
        except UpdateError as error:
            if not conditional_failed(error):
                raise

    def delete_session(self, session_hash: str) -> None:
        SessionItem(session_hash).delete()

    def delete_sessions_of(self, email: str, *, keep: str | None = None) -> int:
        """Ends every session of an account but ``keep`` (a session hash): after verification, a password
        change or a reset."""
        count = 0
        for item in SessionItem.by_email.query(email):
            if item.session_hash == keep:
                continue
            SessionItem(item.session_hash).delete()
            count += 1
        return count
