"""DynamoDB for accounts, sign-up attempts, link tokens and terms acceptances: one aggregate, because
verification writes the token, the account and the acceptances in one transaction.

A sign-up attempt is its own item in the tokens table, keyed by the hash of its link's token: name, company
and password hash wait there until the link is followed, so no attempt ever touches another attempt or an
account, and one nobody follows expires (TTL, and the daily upkeep) without leaving a trace.

The store returns plain domain models; the PynamoDB items stay in ``postpay.adapters.tables``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from postpay.adapters.tables import AcceptanceItem, AccountItem, TokenItem, conditional_failed, connection
from postpay.adapters.tables import epoch as _epoch
from postpay.errors import AccountExists, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Acceptance, Account, AccountStatus, SignupAttempt, SignupForm, TokenRecord


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
        suspended_at=item.suspended_at if item.suspended_for else None,
    )


class AccountsStore:
    """Accounts, sign-up attempts and link tokens, terms acceptances, provisioning locks and suspensions."""

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

    def account_by_client(self, client_id: int) -> Account | None:
        """The account with this client id: through its acceptances (every verified account has them),
        else a scan (an operator's lookup, rare)."""
        for acceptance in AcceptanceItem.query(client_id, consistent_read=True, limit=1):
            account = self.get_account(acceptance.email)
            if account is not None and account.client_id == client_id:
                return account
        for item in AccountItem.scan(AccountItem.client_id == client_id):
            return _to_account(item)
        return None

    def accounts_with_status(self, status: AccountStatus) -> Iterator[Account]:
        for item in AccountItem.by_status.query(status.value):
            yield _to_account(item)

    def billable_before(self, moment: datetime) -> Iterator[tuple[str, int, int]]:
        """Accounts enrolled before ``moment`` with a SolusVM user: who is billed for a period ending then.
        Only the three attributes a job needs are read: a whole account costs its parsing (~10 times the
        attributes) for every account of every run."""
        for item in AccountItem.by_status.query(
            AccountStatus.ENROLLED.value,
            filter_condition=(AccountItem.enrolled_at < moment) & AccountItem.solus_user_id.exists(),
            attributes_to_get=["email", "client_id", "solus_user_id"],
        ):
            if item.solus_user_id is not None:  # (a null written outside PynamoDB passes the filter)
                yield item.email, int(item.client_id), int(item.solus_user_id)

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
