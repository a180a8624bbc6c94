"""Creating (or re-linking) the client's SolusVM user: what makes an account *enrolled*.

Safe to run from several places at once (the verify page, "finish setup", the daily automation): a
lock on the account lets one run at a time, and every attempt looks the email up in SolusVM before it
creates, so a user created by an attempt whose answer was lost is re-linked, never duplicated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import AlreadyProvisioning, SolusRejected, SolusUnavailable
from postpay.models import Account, AccountStatus, SolusUser
from postpay.observability import logger, metrics

if TYPE_CHECKING:
    from postpay.ports import AccountStore, Mailer, SolusVM

# Longer than the worst case of one attempt (a few SolusVM calls of at most 10 s each).
LOCK_HOLD = timedelta(seconds=90)


@dataclass
class RetrySummary:
    attempted: int = 0
    enrolled: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # email -> reason


class Provisioner:
    def __init__(
        self, *, settings: Settings, accounts: AccountStore, solus: SolusVM, mailer: Mailer, clock: Clock
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.solus = solus
        self.mailer = mailer
        self.clock = clock

    def provision(self, email: str, *, notify_if_later: bool) -> Account:
        """Enrolls a verified account. Raises AlreadyProvisioning, SolusUnavailable or SolusRejected.

        ``notify_if_later``: the client was told "we will email you", so a later success sends that email."""
        if not self.accounts.lock_provisioning(email, self.clock.now(), LOCK_HOLD):
            current = self.accounts.get_account(email)
            if current is not None and current.enrolled:
                return current
            raise AlreadyProvisioning(email)
        account = self.accounts.get_account(email)
        assert account is not None and account.status is AccountStatus.VERIFIED
        try:
            user = self._find_or_create(account)
        except (SolusUnavailable, SolusRejected) as error:
            logger.warning(
                "provisioning failed", extra={"client_id": account.client_id, "reason": str(error)}
            )
            metrics.add_metric(name="ProvisioningFailures", unit="Count", value=1)
            self.accounts.mark_provisioning_failed(email, str(error), notify_when_enrolled=notify_if_later)
            raise
        self.accounts.mark_enrolled(email, user.id, self.clock.now())
        logger.info("account enrolled", extra={"client_id": account.client_id, "solus_user_id": user.id})
        metrics.add_metric(name="Enrollments", unit="Count", value=1)
        enrolled = self.accounts.get_account(email)
        assert enrolled is not None
        return enrolled

    def wait_for_enrollment(self, email: str, *, seconds: float = 15.0) -> Account | None:
        """For a second request of the same browser: wait for the first one's attempt to finish."""
        deadline = time.monotonic() + seconds
        while True:
            account = self.accounts.get_account(email)
            if account is None or account.enrolled or time.monotonic() >= deadline:
                return account
            if account.provisioning_error and account.provisioning_attempts > 0 and not self._locked(email):
                return account
            time.sleep(0.25)

    def _locked(self, email: str) -> bool:
        return self.accounts.provisioning_locked(email, self.clock.now())

    def _find_or_create(self, account: Account) -> SolusUser:
        existing = self.solus.find_user_by_email(account.email)
        if existing is not None:
            if existing.billing_user_id == account.client_id:
                return existing
            logger.info("re-linking an existing SolusVM user", extra={"solus_user_id": existing.id})
            return self.solus.link_user(existing.id, account.client_id)
        return self.solus.create_user(
            email=account.email,
            billing_user_id=account.client_id,
            limit_group_id=self.settings.solusvm_limit_group_id,
        )

    def retry_pending(self) -> RetrySummary:
        """The daily automation's hook: provision every verified account that is not enrolled yet,
        and email those that were told they would hear from us."""
        summary = RetrySummary()
        for account in self.accounts.accounts_with_status(AccountStatus.VERIFIED):
            summary.attempted += 1
            try:
                enrolled = self.provision(account.email, notify_if_later=False)
            except AlreadyProvisioning:
                summary.failed[account.email] = "another attempt is in progress"
                continue
            except (SolusUnavailable, SolusRejected) as error:
                summary.failed[account.email] = str(error)
                continue
            summary.enrolled += 1
            if account.notify_when_enrolled:
                self.mailer.send(
                    enrolled.email,
                    "enrolled",
                    name=enrolled.name,
                    dashboard_url=self.settings.url("dashboard"),
                )
        return summary
