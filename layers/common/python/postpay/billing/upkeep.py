"""Daily upkeep: finish provisioning, drop expired sign-ups, suspend overdue clients, lift suspensions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from postpay.clock import Clock
from postpay.config import Settings
from postpay.errors import SolusRejected, SolusUnavailable
from postpay.observability import logger
from postpay.payments import pay_online_url

if TYPE_CHECKING:
    from postpay.ports import AccountStore, InvoiceStore, Mailer, SolusVM
    from postpay.services.provisioning import Provisioner


@dataclass
class UpkeepSummary:
    provisioned: int = 0
    provisioning_failed: int = 0
    pending_removed: int = 0
    suspended: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "provisioned": self.provisioned,
            "provisioningFailed": self.provisioning_failed,
            "pendingRemoved": self.pending_removed,
            "suspended": self.suspended,
            "reactivated": self.reactivated,
            "errors": self.errors,
        }


class Upkeep:
    def __init__(
        self,
        *,
        settings: Settings,
        accounts: AccountStore,
        billing: InvoiceStore,
        solus: SolusVM,
        provisioner: Provisioner,
        mailer: Mailer,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.billing = billing
        self.solus = solus
        self.provisioner = provisioner
        self.mailer = mailer
        self.clock = clock

    def run(self, today: date) -> UpkeepSummary:
        summary = UpkeepSummary()
        retry = self.provisioner.retry_pending()
        summary.provisioned, summary.provisioning_failed = retry.enrolled, len(retry.failed)
        now = self.clock.now()
        summary.pending_removed += self.accounts.delete_expired_tokens(now)
        for account in self.accounts.expired_pending(now):
            if self.accounts.delete_expired_pending(account.email, now):
                summary.pending_removed += 1
        self.suspend_overdue(today, summary)
        for account in self.accounts.suspended_accounts():
            self.lift_if_clear(account.email, today, summary)
        logger.info("upkeep done", extra=summary.as_dict())
        return summary

    def overdue_cutoff(self, today: date) -> date:
        """Unpaid invoices due before this day are overdue (due date + grace days has passed)."""
        return today - timedelta(days=self.settings.grace_days)

    def suspend_overdue(self, today: date, summary: UpkeepSummary) -> None:
        """The intent is recorded before SolusVM is told, so a crash in between is finished the next day;
        a user someone else suspended or locked is left alone, and never lifted by the product."""
        seen: set[str] = set()
        for invoice in self.billing.unpaid_due_before(self.overdue_cutoff(today)):
            account = self.accounts.get_account(invoice.email)
            if account is None or account.solus_user_id is None or account.email in seen:
                continue
            seen.add(account.email)
            try:
                user = self.solus.get_user(account.solus_user_id)
                if account.suspended_for is None:
                    if user.status != "active":
                        logger.info(
                            "SolusVM user not active; not ours to suspend",
                            extra={"client_id": account.client_id},
                        )
                        continue
                    self.accounts.mark_suspended(account.email, invoice.number, self.clock.now())
                if user.status == "active":
                    self.solus.set_status(account.solus_user_id, "suspended")
                    self.mailer.send(
                        account.email,
                        "suspended",
                        invoice=invoice,
                        invoice_url=self.settings.url(f"invoices/{invoice.number}"),
                        pay_url=pay_online_url(self.settings, invoice),
                    )
                    summary.suspended.append(invoice.number)
            except (SolusUnavailable, SolusRejected) as error:
                summary.errors.append(f"suspend {invoice.number}: {error}")

    def lift_if_clear(self, email: str, today: date, summary: UpkeepSummary | None = None) -> bool:
        """Re-activates a user the product suspended once none of its invoices is overdue."""
        account = self.accounts.get_account(email)
        if account is None or not account.suspended_for or account.solus_user_id is None:
            return False
        cutoff = self.overdue_cutoff(today)
        if any(i.email == email for i in self.billing.unpaid_due_before(cutoff)):
            return False
        try:
            self.solus.set_status(account.solus_user_id, "active")
        except (SolusUnavailable, SolusRejected) as error:
            if summary is not None:
                summary.errors.append(f"reactivate {account.client_id}: {error}")
            return False
        self.accounts.clear_suspension(email)
        self.mailer.send(email, "reactivated")
        if summary is not None:
            summary.reactivated.append(account.suspended_for)
        return True
