"""DynamoDB for accounts, sign-up attempts, link tokens, sessions, acceptances, counters and rate limits.

A sign-up attempt is its own item in the tokens table, keyed by the hash of its link's token: name, company
and password hash wait there until the link is followed, so no attempt ever touches another attempt or an
account, and one nobody follows expires (TTL, and the daily upkeep) without leaving a trace.

PynamoDB models live in the adapters and never leak out: the store returns plain domain models.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pynamodb.attributes import (
    BooleanAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.transactions import TransactWrite

from postpay.adapters.tables import Base, bind, connection
from postpay.errors import AccountExists, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Acceptance, Account, AccountStatus, Session, SignupAttempt, SignupForm, TokenRecord

# ---------------------------------------------------------------------------------------------- models


class AccountsByStatus(GlobalSecondaryIndex["AccountItem"]):
    class Meta:
        index_name = "status-index"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class SuspendedAccounts(GlobalSecondaryIndex["AccountItem"]):
    class Meta:
        index_name = "suspended-index"
        projection = AllProjection()

    suspended = UnicodeAttribute(hash_key=True)


class AccountItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "accounts"
    ttl_attribute = "expires_at"

    email = UnicodeAttribute(hash_key=True)
    client_id = NumberAttribute()
    name = UnicodeAttribute()
    company = UnicodeAttribute(default="")
    password_hash = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    verified_at = UTCDateTimeAttribute(null=True)
    enrolled_at = UTCDateTimeAttribute(null=True)
    solus_user_id = NumberAttribute(null=True)
    verify_token_hash = UnicodeAttribute(null=True)
    reset_token_hash = UnicodeAttribute(null=True)  # only the newest reset link works
    provisioning_error = UnicodeAttribute(null=True)
    provisioning_attempts = NumberAttribute(default=0)
    provisioning_lock_until = NumberAttribute(null=True)
    notify_when_enrolled = BooleanAttribute(default=False)
    # Epoch seconds; set only while the sign-up is pending, so DynamoDB's TTL removes abandoned sign-ups.
    expires_at = NumberAttribute(null=True)
    # Set only while the product keeps the SolusVM user suspended for an overdue invoice (a sparse index).
    suspended = UnicodeAttribute(null=True)
    suspended_for = UnicodeAttribute(null=True)
    suspended_at = UTCDateTimeAttribute(null=True)
    # Billing details the client edits on /account: address lines (newline-separated) and tax id.
    billing_address = UnicodeAttribute(null=True)
    tax_id = UnicodeAttribute(null=True)
    by_status = AccountsByStatus()
    by_suspension = SuspendedAccounts()


class TokenItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "tokens"
    ttl_attribute = "expires_at"

    token_hash = UnicodeAttribute(hash_key=True)
    purpose = UnicodeAttribute()
    email = UnicodeAttribute()
    expires_at = NumberAttribute()
    used_at = UTCDateTimeAttribute(null=True)
    used_by = UnicodeAttribute(null=True)
    # A sign-up attempt's details (purpose "verify"), removed when its link is used.
    name = UnicodeAttribute(null=True)
    company = UnicodeAttribute(null=True)
    password_hash = UnicodeAttribute(null=True)


class SessionsByEmail(GlobalSecondaryIndex["SessionItem"]):
    class Meta:
        index_name = "email-index"
        projection = KeysOnlyProjection()

    email = UnicodeAttribute(hash_key=True)


class SessionItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "sessions"
    ttl_attribute = "expires_at"

    session_hash = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    last_seen_at = UTCDateTimeAttribute()
    absolute_expires_at = NumberAttribute()
    expires_at = NumberAttribute()  # idle expiry, pushed forward on use
    by_email = SessionsByEmail()


class AcceptanceItem(Base):
    """Append-only record of terms acceptance, kept forever: one item per (client, document, version)."""

    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "acceptances"

    client_id = NumberAttribute(hash_key=True)
    document_version = UnicodeAttribute(range_key=True)
    email = UnicodeAttribute()
    document = UnicodeAttribute()
    version = UnicodeAttribute()
    url = UnicodeAttribute()
    accepted_at = UTCDateTimeAttribute()
    source_ip = UnicodeAttribute()
    user_agent = UnicodeAttribute()


class RateLimitItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "rate-limits"
    ttl_attribute = "expires_at"

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    expires_at = NumberAttribute()


class CounterItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "counters"

    name = UnicodeAttribute(hash_key=True)
    value = NumberAttribute(default=0)


ACCOUNT_TABLES: list[type[Base]] = [
    AccountItem,
    TokenItem,
    SessionItem,
    AcceptanceItem,
    RateLimitItem,
    CounterItem,
]


# ------------------------------------------------------------------------------------------- helpers


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def conditional_failed(error: Exception) -> bool:
    """A PynamoDB write refused by its condition (not a transport or capacity error)."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def _to_account(item: AccountItem) -> Account:
    return Account(
        email=item.email,
        client_id=int(item.client_id),
        name=item.name,
        company=item.company or "",
        password_hash=item.password_hash,
        status=AccountStatus(item.status),
        created_at=item.created_at,
        verified_at=item.verified_at,
        enrolled_at=item.enrolled_at,
        solus_user_id=int(item.solus_user_id) if item.solus_user_id is not None else None,
        provisioning_error=item.provisioning_error,
        provisioning_attempts=int(item.provisioning_attempts or 0),
        notify_when_enrolled=bool(item.notify_when_enrolled),
        suspended_for=item.suspended_for,
        billing_address=tuple((item.billing_address or "").splitlines()),
        tax_id=item.tax_id or "",
    )


# --------------------------------------------------------------------------------------------- store


class DynamoStore:
    """Accounts, link tokens, terms acceptances, counters and rate limits."""

    def __init__(self, table_prefix: str) -> None:
        bind(table_prefix)

    # counters and rate limits ---------------------------------------------------------------------

    def next_value(self, name: str) -> int:
        """Atomic counter: concurrent callers always get distinct values."""
        item = CounterItem(name)
        item.update(actions=[CounterItem.value.add(1)])
        return int(item.value)

    def hit(self, key: str, window: timedelta, now: datetime) -> int:
        """Counts one hit in the fixed window that contains ``now``; returns the window's count so far."""
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        item = RateLimitItem(f"{key}#{start}")
        item.update(actions=[RateLimitItem.hits.add(1), RateLimitItem.expires_at.set(start + seconds)])
        return int(item.hits)

    def hits(self, key: str, window: timedelta, now: datetime) -> int:
        """The count of the current window, without adding to it."""
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        try:
            return int(RateLimitItem.get(f"{key}#{start}", consistent_read=True).hits or 0)
        except RateLimitItem.DoesNotExist:
            return 0

    def clear_hits(self, key: str, window: timedelta, now: datetime) -> None:
        seconds = int(window.total_seconds())
        start = _epoch(now) // seconds * seconds
        RateLimitItem(f"{key}#{start}").delete()

    # accounts --------------------------------------------------------------------------------------

    def get_account(self, email: str) -> Account | None:
        try:
            return _to_account(AccountItem.get(email, consistent_read=True))
        except AccountItem.DoesNotExist:
            return None

    def get_accounts(self, emails: list[str]) -> dict[str, Account]:
        """The accounts of these emails, by email, in one BatchGetItem per 100 (missing ones left out)."""
        if not emails:
            return {}
        return {
            item.email: _to_account(item) for item in AccountItem.batch_get(set(emails), consistent_read=True)
        }

    def accounts_with_status(self, status: AccountStatus) -> Iterator[Account]:
        for item in AccountItem.by_status.query(status.value):
            yield _to_account(item)

    def enrolled_before(self, moment: datetime) -> Iterator[Account]:
        """Accounts enrolled before ``moment``: who is billed for a period ending then."""
        for item in AccountItem.by_status.query(
            AccountStatus.ENROLLED.value, filter_condition=AccountItem.enrolled_at < moment
        ):
            yield _to_account(item)

    def expired_pending(self, now: datetime) -> Iterator[Account]:
        for item in AccountItem.by_status.query(
            AccountStatus.PENDING.value, filter_condition=AccountItem.expires_at < _epoch(now)
        ):
            yield _to_account(item)

    def delete_expired_pending(self, email: str, now: datetime) -> bool:
        """Removes a pending account of the earlier model (one account item per sign-up) once expired."""
        item = AccountItem(email)
        try:
            token = AccountItem.get(email, consistent_read=True).verify_token_hash
        except AccountItem.DoesNotExist:
            return False
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.delete(
                    item,
                    condition=(AccountItem.status == AccountStatus.PENDING.value)
                    & (AccountItem.expires_at < _epoch(now)),
                )
                if token:
                    tx.delete(TokenItem(token))
        except TransactWriteError:
            return False
        return True

    def suspended_accounts(self) -> Iterator[Account]:
        for item in AccountItem.by_suspension.query("yes"):
            yield _to_account(item)

    def mark_suspended(self, email: str, invoice_number: str, now: datetime) -> None:
        AccountItem(email).update(
            actions=[
                AccountItem.suspended.set("yes"),
                AccountItem.suspended_for.set(invoice_number),
                AccountItem.suspended_at.set(now),
            ]
        )

    def clear_suspension(self, email: str) -> None:
        AccountItem(email).update(
            actions=[
                AccountItem.suspended.remove(),
                AccountItem.suspended_for.remove(),
                AccountItem.suspended_at.remove(),
            ]
        )

    def create_attempt(
        self, form: SignupForm, *, password_hash: str, token_hash: str, expires: datetime
    ) -> None:
        """A new sign-up attempt: its own item, never an overwrite of another attempt or of an account."""
        TokenItem(
            token_hash,
            purpose="verify",
            email=form.email,
            expires_at=_epoch(expires),
            name=form.name,
            company=form.company,
            password_hash=password_hash,
        ).save(condition=TokenItem.token_hash.does_not_exist())

    def get_attempt(self, token_hash: str) -> SignupAttempt | None:
        """The unused sign-up attempt behind a link (None once used, or for a link of another kind)."""
        try:
            item = TokenItem.get(token_hash, consistent_read=True)
        except TokenItem.DoesNotExist:
            return None
        if item.purpose != "verify" or item.used_at is not None or not item.password_hash:
            return None
        return SignupAttempt(
            email=item.email,
            name=item.name or "",
            company=item.company or "",
            password_hash=item.password_hash,
            expires_at=datetime.fromtimestamp(item.expires_at, tz=UTC),
        )

    def delete_expired_tokens(self, now: datetime) -> int:
        """Removes sign-up attempts and links past their expiry (DynamoDB's TTL may lag by days); returns how
        many were sign-up attempts nobody followed (used and reset links are not counted)."""
        abandoned = 0
        for item in TokenItem.scan(filter_condition=TokenItem.expires_at < _epoch(now)):
            try:
                item.delete(condition=TokenItem.expires_at < _epoch(now))
            except DeleteError as error:
                if not conditional_failed(error):
                    raise
                continue
            abandoned += item.purpose == "verify" and bool(item.password_hash)
        return abandoned

    # link tokens -----------------------------------------------------------------------------------

    def get_token(self, token_hash: str, purpose: str) -> TokenRecord | None:
        try:
            item = TokenItem.get(token_hash, consistent_read=True)
        except TokenItem.DoesNotExist:
            return None
        if item.purpose != purpose:
            return None
        return TokenRecord(
            purpose=item.purpose,
            email=item.email,
            expires_at=datetime.fromtimestamp(item.expires_at, tz=UTC),
            used_at=item.used_at,
            used_by=item.used_by,
        )

    def complete_verification(
        self,
        *,
        token_hash: str,
        attempt: SignupAttempt,
        client_id: int,
        used_by: str,
        acceptances: list[Acceptance],
        now: datetime,
    ) -> Account:
        """Consume the attempt's link, create the verified account from exactly that attempt and record every
        acceptance, in one transaction.

        Exactly one of concurrent callers succeeds; the others get TokenUsed, TokenExpired or TokenInvalid,
        and AccountExists when the address was verified through another attempt first."""
        account = AccountItem(
            attempt.email,
            client_id=client_id,
            name=attempt.name,
            company=attempt.company,
            password_hash=attempt.password_hash,
            status=AccountStatus.VERIFIED.value,
            created_at=now,
            verified_at=now,
        )
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.update(
                    TokenItem(token_hash),
                    actions=[
                        TokenItem.used_at.set(now),
                        TokenItem.used_by.set(used_by),
                        TokenItem.name.remove(),
                        TokenItem.company.remove(),
                        TokenItem.password_hash.remove(),
                    ],
                    condition=TokenItem.used_at.does_not_exist()
                    & (TokenItem.expires_at > _epoch(now))
                    & (TokenItem.purpose == "verify")
                    & (TokenItem.password_hash == attempt.password_hash),
                )
                # A pending item of the earlier model may be replaced; a verified or enrolled one never.
                tx.save(
                    account,
                    condition=AccountItem.email.does_not_exist()
                    | (AccountItem.status == AccountStatus.PENDING.value),
                )
                for acceptance in acceptances:
                    tx.save(
                        AcceptanceItem(
                            acceptance.client_id,
                            f"{acceptance.document}#{acceptance.version}",
                            email=acceptance.email,
                            document=acceptance.document,
                            version=acceptance.version,
                            url=acceptance.url,
                            accepted_at=acceptance.accepted_at,
                            source_ip=acceptance.source_ip,
                            user_agent=acceptance.user_agent,
                        ),
                        condition=AcceptanceItem.client_id.does_not_exist(),
                    )
        except TransactWriteError as error:
            record = self.get_token(token_hash, "verify")
            if record is None:
                raise TokenInvalid() from error
            if record.used_at is not None:
                raise TokenUsed(record.email, same_browser=record.used_by == used_by) from error
            if record.expires_at <= now:
                raise TokenExpired() from error
            existing = self.get_account(attempt.email)
            if existing is not None and existing.status is not AccountStatus.PENDING:
                raise AccountExists(attempt.email) from error
            raise TokenInvalid() from error
        return _to_account(account)

    def discard_attempt(self, token_hash: str) -> None:
        TokenItem(token_hash).delete()

    def start_reset(self, email: str, token_hash: str, expires: datetime) -> None:
        """A password-reset link for an existing account; it replaces any earlier one."""
        with TransactWrite(connection=connection()) as tx:
            tx.save(
                TokenItem(token_hash, purpose="reset", email=email, expires_at=_epoch(expires)),
                condition=TokenItem.token_hash.does_not_exist(),
            )
            tx.update(
                AccountItem(email),
                actions=[AccountItem.reset_token_hash.set(token_hash)],
                condition=AccountItem.email.exists(),
            )

    def complete_reset(self, *, token_hash: str, email: str, password_hash: str, now: datetime) -> None:
        """Consumes the newest reset link and sets the password, together. Raises TokenUsed / TokenInvalid."""
        try:
            with TransactWrite(connection=connection()) as tx:
                tx.update(
                    TokenItem(token_hash),
                    actions=[TokenItem.used_at.set(now)],
                    condition=TokenItem.used_at.does_not_exist()
                    & (TokenItem.expires_at > _epoch(now))
                    & (TokenItem.purpose == "reset"),
                )
                tx.update(
                    AccountItem(email),
                    actions=[
                        AccountItem.password_hash.set(password_hash),
                        AccountItem.reset_token_hash.remove(),
                    ],
                    condition=AccountItem.reset_token_hash == token_hash,
                )
        except TransactWriteError as error:
            record = self.get_token(token_hash, "reset")
            if record is not None and record.used_at is not None:
                raise TokenUsed(record.email) from error
            if record is not None and record.expires_at <= now:
                raise TokenExpired() from error
            raise TokenInvalid() from error

    def reset_token_current(self, email: str, token_hash: str) -> bool:
        try:
            return AccountItem.get(email, consistent_read=True).reset_token_hash == token_hash
        except AccountItem.DoesNotExist:
            return False

    def set_password(self, email: str, password_hash: str, *, replacing: str | None = None) -> bool:
        """Sets the password hash; with ``replacing``, only if the stored hash is still that one."""
        condition = AccountItem.email.exists()
        if replacing is not None:
            condition &= AccountItem.password_hash == replacing
        try:
            AccountItem(email).update(
                actions=[AccountItem.password_hash.set(password_hash)], condition=condition
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def set_billing_details(self, email: str, address: tuple[str, ...], tax_id: str) -> None:
        """What the client's next invoices will print; issued invoices keep their own copy."""
        actions: list[Action] = [
            AccountItem.billing_address.set("\n".join(address))
            if address
            else AccountItem.billing_address.remove(),
            AccountItem.tax_id.set(tax_id) if tax_id else AccountItem.tax_id.remove(),
        ]
        AccountItem(email).update(actions=actions, condition=AccountItem.email.exists())

    def acceptances(self, client_id: int) -> list[Acceptance]:
        return [
            Acceptance(
                client_id=int(i.client_id),
                email=i.email,
                document=i.document,
                version=i.version,
                url=i.url,
                accepted_at=i.accepted_at,
                source_ip=i.source_ip,
                user_agent=i.user_agent,
            )
            for i in AcceptanceItem.query(client_id, consistent_read=True)
        ]

    # provisioning ----------------------------------------------------------------------------------

    def lock_provisioning(self, email: str, now: datetime, hold: timedelta) -> bool:
        """Take the account's provisioning lock (verified accounts only); False if someone holds it."""
        item = AccountItem(email)
        try:
            item.update(
                actions=[
                    AccountItem.provisioning_lock_until.set(_epoch(now + hold)),
                    AccountItem.provisioning_attempts.add(1),
                ],
                condition=(AccountItem.status == AccountStatus.VERIFIED.value)
                & (
                    AccountItem.provisioning_lock_until.does_not_exist()
                    | (AccountItem.provisioning_lock_until < _epoch(now))
                ),
            )
        except UpdateError as error:
            if conditional_failed(error):
                return False
            raise
        return True

    def provisioning_locked(self, email: str, now: datetime) -> bool:
        try:
            item = AccountItem.get(email, consistent_read=True, attributes_to_get=["provisioning_lock_until"])
        except AccountItem.DoesNotExist:
            return False
        return item.provisioning_lock_until is not None and item.provisioning_lock_until >= _epoch(now)

    def mark_enrolled(self, email: str, solus_user_id: int, now: datetime) -> None:
        AccountItem(email).update(
            actions=[
                AccountItem.status.set(AccountStatus.ENROLLED.value),
                AccountItem.solus_user_id.set(solus_user_id),
                AccountItem.enrolled_at.set(now),
                AccountItem.provisioning_error.remove(),
                AccountItem.provisioning_lock_until.remove(),
                AccountItem.notify_when_enrolled.set(False),
            ],
            condition=AccountItem.status == AccountStatus.VERIFIED.value,
        )

    def mark_provisioning_failed(self, email: str, error: str, *, notify_when_enrolled: bool) -> None:
        actions: list[Action] = [
            AccountItem.provisioning_error.set(error[:500]),
            AccountItem.provisioning_lock_until.remove(),
        ]
        if notify_when_enrolled:
            actions.append(AccountItem.notify_when_enrolled.set(True))
        AccountItem(email).update(
            actions=actions, condition=AccountItem.status == AccountStatus.VERIFIED.value
        )

    # sessions --------------------------------------------------------------------------------------

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
