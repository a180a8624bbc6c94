"""Sign-up and email verification: the logic, free of events and HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import AccountExists, RateLimited, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Acceptance, Account, AccountStatus, SignupForm, TokenRecord
from postpay.observability import logger, metrics
from postpay.security import address_key, hash_password, new_token, token_hash

if TYPE_CHECKING:
    from postpay.adapters.dynamo import DynamoStore

HOUR = timedelta(hours=1)


class Mailer(Protocol):
    def send(self, to: str, template: str, **context: object) -> str: ...


class TermsNotAccepted(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("terms not accepted: " + ", ".join(missing))
        self.missing = missing


class Enrollment:
    def __init__(self, *, settings: Settings, store: DynamoStore, mailer: Mailer, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.clock = clock

    # sign-up ---------------------------------------------------------------------------------------

    def signup(self, form: SignupForm, *, source_ip: str) -> None:
        """Creates or renews a pending sign-up and mails the link, or mails "you already have an account".

        Same observable outcome whether or not the address is known: no enumeration."""
        now = self.clock.now()
        if self.store.hit(f"signup-ip#{source_ip}", HOUR, now) > self.settings.signups_per_ip_per_hour:
            raise RateLimited("sign-ups from this address")
        self._count_email(form.email, now)
        password_hash = hash_password(form.password)  # always: the same work on every branch
        account = self.store.get_account(form.email)
        for _ in range(3):  # a concurrent sign-up for the same address can win a race; re-read and go on
            if account is None:
                if self._create(form, password_hash):
                    return
            elif account.status is AccountStatus.PENDING:
                if self._renew(form, password_hash):
                    return
            else:
                self._already_registered(account)
                return
            account = self.store.get_account(form.email)
        raise RuntimeError("sign-up kept racing with concurrent sign-ups for the same address")

    def _create(self, form: SignupForm, password_hash: str) -> bool:
        now = self.clock.now()
        token = new_token()
        expires = now + timedelta(hours=self.settings.verify_token_ttl_hours)
        client_id = self.store.next_value("client_id")
        try:
            self.store.create_pending(
                form,
                client_id=client_id,
                password_hash=password_hash,
                token_hash=token_hash(token),
                expires=expires,
                now=now,
            )
        except AccountExists:
            return False
        metrics.add_metric(name="SignUps", unit="Count", value=1)
        self._send_link(form.email, form.name, token)
        return True

    def _renew(self, form: SignupForm, password_hash: str) -> bool:
        now = self.clock.now()
        token = new_token()
        expires = now + timedelta(hours=self.settings.verify_token_ttl_hours)
        renewed = self.store.renew_pending(
            form,
            old_token_hash=self.store.pending_token_hash(form.email),
            password_hash=password_hash,
            token_hash=token_hash(token),
            expires=expires,
        )
        if renewed:
            self._send_link(form.email, form.name, token)
        return renewed

    def resend(self, account: Account) -> bool:
        """A new verification link for a pending account (the old one stops working); False if not pending."""
        if account.status is not AccountStatus.PENDING:
            return False
        self._count_email(account.email, self.clock.now())
        form = SignupForm(name=account.name, company=account.company, email=account.email, password="")
        return self._renew(form, account.password_hash)

    def _count_email(self, email: str, now: datetime) -> None:
        """One more verification email to this address this hour, or RateLimited past the limit."""
        if (
            self.store.hit(f"signup-email#{address_key(email)}", HOUR, now)
            > self.settings.signup_emails_per_address_per_hour
        ):
            raise RateLimited("emails to this address")

    def _send_link(self, email: str, name: str, token: str) -> None:
        self.mailer.send(
            email,
            "verify",
            name=name,
            link=self.settings.url(f"verify?token={token}"),
            hours=self.settings.verify_token_ttl_hours,
        )

    def _already_registered(self, account: Account) -> None:
        self.mailer.send(
            account.email,
            "already_registered",
            name=account.name,
            login_url=self.settings.url("login"),
            forgot_url=self.settings.url("forgot"),
        )

    # verification ----------------------------------------------------------------------------------

    def check_token(self, token: str) -> TokenRecord:
        """The verification link behind ``token``, or TokenInvalid / TokenExpired / TokenUsed."""
        if not token or len(token) > 128:
            raise TokenInvalid()
        record = self.store.get_token(token_hash(token), "verify")
        if record is None:
            raise TokenInvalid()
        if record.used_at is not None:
            raise TokenUsed(record.email)
        if record.expires_at <= self.clock.now():
            raise TokenExpired()
        return record

    def accept(
        self, token: str, accepted: set[str], *, source_ip: str, user_agent: str, browser: str
    ) -> Account:
        """Records the acceptance of every required document and marks the email verified, atomically.

        Of concurrent calls with the same token exactly one succeeds; the others raise TokenUsed."""
        try:
            record = self.check_token(token)
        except TokenUsed as used:
            raise TokenUsed(used.email, same_browser=self._used_by(token) == browser) from None
        missing = [doc.title for doc in self.settings.terms if doc.key not in accepted]
        if missing:
            raise TermsNotAccepted(missing)
        account = self.store.get_account(record.email)
        if account is None:
            raise TokenInvalid()
        now = self.clock.now()
        acceptances = [
            Acceptance(
                client_id=account.client_id,
                email=account.email,
                document=doc.key,
                version=doc.version,
                url=doc.url,
                accepted_at=now,
                source_ip=source_ip,
                user_agent=user_agent,
            )
            for doc in self.settings.terms
        ]
        self.store.complete_verification(
            token_hash=token_hash(token),
            email=account.email,
            used_by=browser,
            acceptances=acceptances,
            now=now,
        )
        logger.info("email verified", extra={"client_id": account.client_id})
        metrics.add_metric(name="Verifications", unit="Count", value=1)
        return account

    def _used_by(self, token: str) -> str | None:
        record = self.store.get_token(token_hash(token), "verify")
        return record.used_by if record else None
