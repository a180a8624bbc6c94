"""Sign-up and email verification: the logic, free of events and HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import AccountExists, RateLimited, TokenExpired, TokenInvalid, TokenUsed
from postpay.models import Acceptance, Account, AccountStatus, SignupAttempt, SignupForm
from postpay.observability import logger, metrics
from postpay.security import address_key, hash_password, new_token, token_hash, verify_password

if TYPE_CHECKING:
    from postpay.ports import AccountStore, Counters, Mailer, SessionStore
    from postpay.services.guard import PasswordGuard

HOUR = timedelta(hours=1)


class TermsNotAccepted(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("terms not accepted: " + ", ".join(missing))
        self.missing = missing


class WrongSignupPassword(Exception):
    """The password typed on the terms page is not the one chosen at this sign-up."""


class Enrollment:
    def __init__(
        self,
        *,
        settings: Settings,
        accounts: AccountStore,
        sessions: SessionStore,
        counters: Counters,
        mailer: Mailer,
        clock: Clock,
        guard: PasswordGuard,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sessions = sessions
        self.counters = counters
        self.mailer = mailer
        self.clock = clock
        self.guard = guard

    # sign-up ---------------------------------------------------------------------------------------

    def signup(self, form: SignupForm, *, source_ip: str) -> None:
        """Records this attempt and mails its link, or mails "you already have an account".

        Every attempt is its own record: it never changes another attempt or an account. Same observable
        outcome whether or not the address is known: no enumeration."""
        now = self.clock.now()
        if self.counters.hit(f"signup-ip#{source_ip}", HOUR, now) > self.settings.signups_per_ip_per_hour:
            raise RateLimited("sign-ups from this address")
        self._count_email(form.email, now)
        password_hash = hash_password(form.password)  # always: the same work on every branch
        account = self.accounts.get_account(form.email)
        if account is not None and account.status is not AccountStatus.PENDING:
            self._already_registered(account)
            return
        token = new_token()
        self.accounts.create_attempt(
            form,
            password_hash=password_hash,
            token_hash=token_hash(token),
            expires=now + timedelta(hours=self.settings.verify_token_ttl_hours),
        )
        metrics.add_metric(name="SignUps", unit="Count", value=1)
        self._send_link(form.email, form.name, token)

    def _count_email(self, email: str, now: datetime) -> None:
        """One more verification email to this address this hour, or RateLimited past the limit."""
        if (
            self.counters.hit(f"signup-email#{address_key(email)}", HOUR, now)
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

    def check_token(self, token: str) -> SignupAttempt:
        """The sign-up attempt behind ``token``, or TokenInvalid / TokenExpired / TokenUsed."""
        if not token or len(token) > 128:
            raise TokenInvalid()
        record = self.accounts.get_token(token_hash(token), "verify")
        if record is None:
            raise TokenInvalid()
        if record.used_at is not None:
            raise TokenUsed(record.email)
        if record.expires_at <= self.clock.now():
            raise TokenExpired()
        attempt = self.accounts.get_attempt(token_hash(token))
        if attempt is None:  # a link of the earlier model, or used a moment ago
            raise TokenInvalid()
        existing = self.accounts.get_account(attempt.email)
        if existing is not None and existing.status is not AccountStatus.PENDING:
            raise TokenUsed(attempt.email)  # verified through another attempt: "already confirmed, log in"
        return attempt

    def accept(
        self,
        token: str,
        password: str,
        accepted: set[str],
        *,
        source_ip: str,
        user_agent: str,
        browser: str,
    ) -> Account:
        """Creates the verified account from exactly this attempt, once its password is typed again, with a
        record of the acceptance of every required document, atomically.

        Of concurrent calls with the same token exactly one succeeds; the others raise TokenUsed. A wrong
        password raises WrongSignupPassword and counts against the guessing limits (RateLimited past them)."""
        try:
            attempt = self.check_token(token)
        except TokenUsed as used:
            raise TokenUsed(used.email, same_browser=self._used_by(token) == browser) from None
        missing = [doc.title for doc in self.settings.terms if doc.key not in accepted]
        if missing:
            raise TermsNotAccepted(missing)
        # Counted per attempt (not per address): guesses at someone's log-in never block their sign-up.
        subject = f"attempt:{token_hash(token)}"
        self.guard.check(subject, source_ip)
        if not verify_password(password, attempt.password_hash):
            self.guard.failed(subject, source_ip)
            raise WrongSignupPassword()
        now = self.clock.now()
        client_id = self.counters.next_value("client_id")
        acceptances = [
            Acceptance(
                client_id=client_id,
                email=attempt.email,
                document=doc.key,
                version=doc.version,
                url=doc.url,
                accepted_at=now,
                source_ip=source_ip,
                user_agent=user_agent,
            )
            for doc in self.settings.terms
        ]
        try:
            account = self.accounts.complete_verification(
                token_hash=token_hash(token),
                attempt=attempt,
                client_id=client_id,
                used_by=browser,
                acceptances=acceptances,
                now=now,
            )
        except AccountExists:
            # The address was verified through another attempt first: this one is void.
            self.accounts.discard_attempt(token_hash(token))
            raise TokenUsed(attempt.email) from None
        # Nothing may stay signed in to an address from before its owner proved it (sessions of the
        # earlier model, where a pending account could log in).
        self.sessions.delete_sessions_of(account.email)
        logger.info("email verified", extra={"client_id": account.client_id})
        metrics.add_metric(name="Verifications", unit="Count", value=1)
        return account

    def _used_by(self, token: str) -> str | None:
        record = self.accounts.get_token(token_hash(token), "verify")
        return record.used_by if record else None
