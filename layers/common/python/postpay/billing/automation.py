"""The automation function's logic: the daily schedule and the operator's commands."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from postpay import money
from postpay.billing.schedule import Daily, PayloadError, daily, is_scheduled
from postpay.limits import EXPORT_LINK_SECONDS
from postpay.models import CreditNote, Invoice, InvoiceStatus, RunRecord
from postpay.observability import logger, metrics
from postpay.periods import local_date, month_before

if TYPE_CHECKING:
    from postpay.billing.collection import Collection
    from postpay.billing.commands import (
        AccountLookup,
        ExportInvoices,
        InvoiceMonth,
        ListInvoices,
        MarkPaid,
        QueueRun,
        Rebill,
        Refund,
        ResendInvoice,
        RunStatus,
        VoidInvoice,
    )
    from postpay.billing.invoicing import Invoicing
    from postpay.billing.upkeep import Upkeep
    from postpay.clock import Clock
    from postpay.config import Settings
    from postpay.ports import AccountStore, Exports, InvoiceDesk


PAGE_SIZE = 100  # accounts per runStatus answer, well under Lambda's 6 MB response limit


def run_summary(run: RunRecord) -> dict[str, Any]:
    done = run.done
    # The worker's clock may lag the clock that started the run (another host, or `make invoice NOW=…`):
    # the times shown are ordered whatever the clocks did.
    updated = max(run.updated_at, run.started_at)
    return {
        "runId": run.run_id,
        "trigger": run.trigger,
        "dryRun": run.dry_run,
        "period": run.period,
        "state": "finished" if run.finished else run.state,
        "finished": run.finished,
        "queued": run.counts["queued"],
        "wouldInvoice": run.counts["would_invoice"],
        "done": done,
        "pending": max(run.counts["queued"] - done, 0) if run.state == "queued" else None,
        "invoiced": run.counts["invoiced"],
        "alreadyInvoiced": run.counts["already_invoiced"],
        "nothingToBill": run.counts["nothing_to_bill"],
        "failed": run.counts["failed"],
        "failures": {str(k): v for k, v in sorted(run.failures.items())},
        "startedAt": run.started_at.isoformat(),
        "updatedAt": updated.isoformat(),
        "finishedAt": updated.isoformat() if run.finished else None,
    }


def invoice_summary(
    invoice: Invoice, overdue_cutoff: date, refunded: Decimal, overdue: bool | None = None
) -> dict[str, Any]:
    """One invoice row for the operator; ``overdue`` as the suspension reads it (unpaid and due before the
    cutoff), while ``status`` stays as stored (an overdue invoice is "unpaid"); ``refunded``: what was
    refunded of its card payment."""
    return {
        "number": invoice.number,
        "client": invoice.client_id,
        "email": invoice.email,
        "period": invoice.period_key,
        "total": str(invoice.total),
        "currency": invoice.currency,
        "status": invoice.status.value,
        "issuedOn": invoice.issued_on.isoformat(),
        "dueOn": invoice.due_on.isoformat(),
        "paidAt": invoice.paid_at.isoformat() if invoice.paid_at else None,
        "paymentReference": invoice.payment_reference,
        "overdue": overdue
        if overdue is not None
        else invoice.status is InvoiceStatus.UNPAID and invoice.due_on < overdue_cutoff,
        "refunded": format(refunded, "f"),
        # carried below the gateway's minimum: to which invoice (null: not issued yet), and what it carries in
        **({"carriedTo": invoice.carried_to} if invoice.status is InvoiceStatus.CARRIED else {}),
        **(
            {"carriedFrom": [{"invoice": c.number, "amount": str(c.amount)} for c in invoice.carried_in]}
            if invoice.carried_in
            else {}
        ),
    }


def invoker_of(context: Any) -> dict[str, Any]:
    """Who invoked the function, as far as Lambda says: the invoked ARN (function, version or alias), the
    request id, and the client context / Cognito identity when the caller sent one. Lambda does not pass
    the caller's IAM principal to the function; CloudTrail records it with the same request id."""
    invoker: dict[str, Any] = {
        "invokedFunctionArn": getattr(context, "invoked_function_arn", None),
        "requestId": getattr(context, "aws_request_id", None),
    }
    identity = getattr(context, "identity", None)
    identity_id = getattr(identity, "cognito_identity_id", None)
    if identity_id:
        invoker["cognitoIdentityId"] = identity_id
        invoker["cognitoIdentityPoolId"] = getattr(identity, "cognito_identity_pool_id", None)
    client_context = getattr(context, "client_context", None)
    client = getattr(client_context, "client", None)
    if client is not None:
        invoker["client"] = {
            k: getattr(client, k, None) for k in ("installation_id", "app_title", "app_package_name")
        }
    return invoker


class Automation:
    def __init__(
        self,
        *,
        settings: Settings,
        invoicing: Invoicing,
        upkeep: Upkeep,
        billing: InvoiceDesk,
        accounts: AccountStore,
        clock: Clock,
        exports: Exports | None = None,
        collection: Collection | None = None,
    ) -> None:
        self.collection = collection  # None: Stripe is not configured, no dunning
        self.settings = settings
        self.invoicing = invoicing
        self.upkeep = upkeep
        self.billing = billing
        self.accounts = accounts
        self.clock = clock
        self.exports = exports

    def handle(self, event: Any, invoker: dict[str, Any] | None = None) -> dict[str, Any]:
        """Parses the payload (a refusal raises PayloadError before anything happens), logs the accepted
        payload with its invoker for audit, and runs its handler."""
        handler: Callable[[Automation, Any], dict[str, Any]]
        # the schedule's request takes no table: handlers() would import the operator's commands
        if is_scheduled(event):
            command: Any = daily(event, self.settings.billing_timezone, self.clock.now())
            name, handler = "schedule", Automation.daily
        else:
            from postpay.billing import commands  # the operator's payloads: imported by the first one

            command = commands.parse(event, timezone=self.settings.billing_timezone, now=self.clock.now())
            name, handler = commands.payload_name(event), handlers()[type(command)]
        logger.info(
            "automation payload accepted",
            extra={"audit": True, "payload": name, "invoker": invoker or {}},
        )
        return handler(self, command)

    def status(self, command: RunStatus) -> dict[str, Any]:
        """The run's summary and one page of its accounts' outcomes (a dry run's lines and totals among
        them); ``next`` is the ``after`` of the next page, null on the last."""
        run = self.billing.run(command.run_id)
        if run is None:
            raise PayloadError(f"no run {command.run_id!r}")
        accounts, after = self.billing.outcomes(command.run_id, after=command.after, limit=PAGE_SIZE)
        return {**run_summary(run), "accounts": accounts, "next": after}

    def daily(self, command: Daily) -> dict[str, Any]:
        result: dict[str, Any] = {"date": command.today.isoformat()}
        now = self.clock.now()
        # only scheduled runs say this (not an operator's run of the daily job), and not before the first one
        previous = self.billing.daily_heartbeat(now) if command.scheduled else None
        if previous is not None:
            hours = round((now - previous).total_seconds() / 3600, 2)
            metrics.add_metric(name="HoursSinceLastDailyRun", unit="Count", value=hours)
            result["hoursSinceLastDailyRun"] = hours
        if command.today.day == 1:
            period = month_before(command.today, self.settings.billing_timezone)
            result["run"] = run_summary(self.invoicing.start(period, trigger="schedule"))
        if self.collection is not None:
            # before upkeep, so an invoice paid by today's retry does not suspend anyone
            unpaid = self.billing.unpaid_due_before(date.max)
            result["dunning"] = self.collection.dunning(command.today, unpaid)
        result["upkeep"] = self.upkeep.run(command.today).as_dict()
        return result

    def invoice_month(self, command: InvoiceMonth) -> dict[str, Any]:
        """An operator's run (or dry run), accepted at once; an identical request within RUN_JOIN_MINUTES
        joins the run it started."""
        invoicing_date = command.invoicing_date or command.period.end
        run_id, joined = self.invoicing.request(
            command.period, invoicing_date=invoicing_date, dry_run=command.dry_run
        )
        run = self.billing.run(run_id)
        summary = run_summary(run) if run is not None else {"runId": run_id, "state": "starting"}
        answer: dict[str, Any] = {**summary, "joined": joined}
        if joined:
            minutes = self.invoicing.settings.run_join_minutes  # the window the join was decided by
            started = run.started_at if run is not None else self.clock.now()
            again = (started + timedelta(minutes=minutes)).astimezone(UTC)
            answer["note"] = (
                f"joined run {run_id} started at {started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
                f"(same request within {minutes} minutes): accounts enrolled since are not in it; "
                f"send it again after "
                f"{again:%H:%M} UTC or with another invoicingDate"
            )
        return answer

    def queue_run(self, command: QueueRun) -> dict[str, Any]:
        try:
            return run_summary(self.invoicing.queue_run(command.run_id))
        except LookupError as error:
            raise PayloadError(f"no run {command.run_id!r}") from error

    def rebill(self, command: Rebill) -> dict[str, Any]:
        from postpay.billing.invoicing import RebillRefused

        try:
            run = self.invoicing.rebill(command.client_id, command.period)
        except RebillRefused as error:
            raise PayloadError(f"rebill refused: {error}") from error
        return {**run_summary(run), "client": command.client_id}

    def refund(self, command: Refund) -> dict[str, Any]:
        from postpay.billing.collection import NotPayable
        from postpay.payments import GatewayRefused

        if self.collection is None:
            raise PayloadError("refund refused: card payments (Stripe) are not configured")
        invoice = self.billing.invoice_by_number(command.number)
        if invoice is None:
            raise PayloadError(f"no invoice {command.number!r}")
        try:
            return self.collection.refund(invoice, command.amount, command.reason)
        except ValueError as error:  # an amount finer than the currency's minor unit
            raise PayloadError(f"refund refused: {error}") from error
        except (NotPayable, GatewayRefused) as error:
            raise PayloadError(f"refund refused: {error}") from error

    def mark_paid(self, command: MarkPaid) -> dict[str, Any]:
        """Every payment is checked before any is recorded: a list with one unknown or already paid invoice
        is refused whole, so a bank statement is imported all at once or not at all."""
        for payment in command.payments:
            invoice = self.billing.invoice_by_number(payment.number)
            if invoice is None:
                raise PayloadError(f"no invoice {payment.number!r}")
            if invoice.status is InvoiceStatus.CARRIED and invoice.carried_to:
                raise PayloadError(
                    f"invoice {payment.number} was carried to {invoice.carried_to}: its total is billed"
                    f" there (pay or void {invoice.carried_to} instead)"
                )
            if invoice.status not in (InvoiceStatus.UNPAID, InvoiceStatus.CARRIED):
                raise PayloadError(f"invoice {payment.number} is {invoice.status.value}, not unpaid")
        results = [self._pay(payment.number, payment.reference) for payment in command.payments]
        if len(results) == 1:
            return results[0]
        return {"paid": results, "count": len(results)}

    def _pay(self, number: str, reference: str) -> dict[str, Any]:
        now = self.clock.now()
        try:
            invoice = self.billing.mark_paid(number, reference, now)
        except LookupError as error:
            raise PayloadError(f"no invoice {number!r}") from error
        except ValueError as error:
            raise PayloadError(str(error)) from error
        logger.info("invoice paid", extra={"invoice": invoice.number, "client_id": invoice.client_id})
        reactivated = self.upkeep.lift_if_clear(
            invoice.email, local_date(now, self.settings.billing_timezone)
        )
        return {
            "invoice": invoice.number,
            "status": invoice.status.value,
            "reference": reference,
            "paidAt": now.isoformat(),
            "reactivated": reactivated,
        }

    def _refunded(self, invoice: Invoice) -> Decimal:
        """What was refunded of the invoice's card payment: one read for an invoice paid by card, none
        without Stripe configured (nothing can be paid by card then)."""
        if self.collection is None:
            return money.quantum(invoice.currency) * 0
        return self.collection.refunded(invoice)

    def account(self, command: AccountLookup) -> dict[str, Any]:
        if command.email is not None:
            account = self.accounts.get_account(command.email)
        else:
            account = self.accounts.account_by_client(command.client_id or 0)
        if account is None:
            raise PayloadError(f"no account {command.email or command.client_id!r}")
        cutoff = self.upkeep.overdue_cutoff(local_date(self.clock.now(), self.settings.billing_timezone))
        return {
            "email": account.email,
            "client": account.client_id,
            "name": account.name,
            "company": account.company,
            "status": account.status.value,
            "solusUserId": account.solus_user_id,
            "createdAt": account.created_at.isoformat(),
            "verifiedAt": account.verified_at.isoformat() if account.verified_at else None,
            "enrolledAt": account.enrolled_at.isoformat() if account.enrolled_at else None,
            "suspendedFor": account.suspended_for,
            "suspendedAt": account.suspended_at.isoformat() if account.suspended_at else None,
            "provisioningError": account.provisioning_error,
            "terms": [
                {
                    "document": a.document,
                    "version": a.version,
                    "url": a.url,
                    "acceptedAt": a.accepted_at.isoformat(),
                    "sourceIp": a.source_ip,
                    "userAgent": a.user_agent,
                }
                for a in self.accounts.acceptances(account.client_id)
            ],
            "invoices": [
                invoice_summary(i, cutoff, self._refunded(i))
                for i in self.billing.invoices_of(account.client_id)
            ],
        }

    def list_invoices(self, command: ListInvoices) -> dict[str, Any]:
        """A page of invoices in number order, and the cursor of the next page (null on the last)."""
        overdue = command.status == "overdue"
        today = local_date(self.clock.now(), self.settings.billing_timezone)
        cutoff = self.upkeep.overdue_cutoff(today)  # as the suspension reads it
        invoices = self.billing.find_invoices(
            status="unpaid" if overdue else command.status,
            period_key=command.period,
            client_id=command.client_id,
            due_before=cutoff if overdue else None,
        )
        invoices.sort(key=lambda i: (len(i.number), i.number))
        if command.after is not None:
            after = (len(command.after), command.after)
            invoices = [i for i in invoices if (len(i.number), i.number) > after]
        page = invoices[: command.limit]
        more = len(invoices) > command.limit
        return {
            # a row the overdue filter found is overdue by the index the suspension reads
            "invoices": [invoice_summary(i, cutoff, self._refunded(i), overdue or None) for i in page],
            "count": len(page),
            "after": page[-1].number if more else None,
        }

    def resend_invoice(self, command: ResendInvoice) -> dict[str, Any]:
        invoice = self.billing.invoice_by_number(command.number)
        if invoice is None:
            raise PayloadError(f"no invoice {command.number!r}")
        message_id = self.invoicing.send_invoice_email(invoice)
        now = self.clock.now()
        self.billing.add_history(
            invoice, {"at": now.isoformat(), "event": "emailed again", "messageId": message_id}
        )
        logger.info(
            "invoice emailed again", extra={"invoice": invoice.number, "client_id": invoice.client_id}
        )
        return {
            "invoice": invoice.number,
            "emailedTo": invoice.email,
            "messageId": message_id,
            "history": self.billing.invoice_history(invoice.number),
        }

    def void_invoice(self, command: VoidInvoice) -> dict[str, Any]:
        """Cancels an unpaid invoice with a credit note (never deleted, never renumbered), emails the
        client, and lifts a suspension it caused. The month can then be billed again with rebill."""
        now = self.clock.now()
        today = local_date(now, self.settings.billing_timezone)

        def credit_note_for(number: int, invoice: Invoice) -> CreditNote:
            return CreditNote(
                number=self.settings.credit_note_number_format.format(number=number),
                invoice_number=invoice.number,
                client_id=invoice.client_id,
                email=invoice.email,
                period_start=invoice.period_start,
                period_end=invoice.period_end,
                currency=invoice.currency,
                # a balance the invoice carried in is cancelled with it (and carried again: billing.void)
                subtotal=-(invoice.subtotal + invoice.carried_total),
                tax=-invoice.tax,
                total=-invoice.total,
                issued_on=today,
                reason=command.reason,
                seller=invoice.seller,
                buyer=invoice.buyer,
            )

        if self.collection is not None:
            self._before_void(command.number)
        try:
            invoice, note = self.billing.void(
                command.number, reason=command.reason, now=now, credit_note_for=credit_note_for
            )
        except LookupError as error:
            raise PayloadError(f"no invoice {command.number!r}") from error
        except ValueError as error:
            raise PayloadError(str(error)) from error
        logger.info(
            "invoice voided",
            extra={"invoice": invoice.number, "credit_note": note.number, "client_id": invoice.client_id},
        )
        message_id = self.invoicing.mailer.send(
            invoice.email,
            "credit_note",
            invoice=invoice,
            credit_note=note,
            invoice_url=self.settings.url(f"invoices/{invoice.number}"),
        )
        self.billing.mark_credit_note_emailed(note, message_id, self.clock.now())
        reactivated = self.upkeep.lift_if_clear(invoice.email, today)
        return {
            "invoice": invoice.number,
            "status": invoice.status.value,
            "creditNote": credit_note_summary(note),
            "reactivated": reactivated,
            "rebill": {"client": invoice.client_id, "period": invoice.period_key},
        }

    def _before_void(self, number: str) -> None:
        """No card payment may start or finish on the invoice once void: a charge being made is waited
        for, a PaymentIntent waiting for 3-D Secure is cancelled (Collection.before_void)."""
        from postpay.billing.void_payments import ChargeInFlight
        from postpay.payments import GatewayError

        assert self.collection is not None
        invoice = self.billing.invoice_by_number(number)
        if invoice is None or invoice.status is not InvoiceStatus.UNPAID:
            return  # the void itself refuses it, with its own message
        try:
            self.collection.before_void(invoice)
        except ChargeInFlight as error:
            raise PayloadError(f"void refused: {error}") from error
        except GatewayError as error:
            raise PayloadError(
                f"void refused: the card payment of invoice {number} waiting for the client's bank could not "
                f"be cancelled at Stripe ({error}); try again"
            ) from error

    def export_invoices(self, command: ExportInvoices) -> dict[str, Any]:
        """The month's invoices and credit notes as CSV: in the answer when small, else an S3 object (private,
        encrypted, expired by the bucket's lifecycle) behind a presigned link."""
        invoices = self.billing.find_invoices(status=None, period_key=command.period, client_id=None)
        notes = self.billing.credit_notes(period_key=command.period)
        companies: dict[int, str] = {}

        def company_of(client_id: int) -> str:
            if client_id not in companies:
                account = self.accounts.account_by_client(client_id)
                companies[client_id] = account.company if account is not None else ""
            return companies[client_id]

        from postpay.billing.exports import invoices_csv

        text = invoices_csv(invoices, notes, company_of, self._refunded)
        body = text.encode("utf-8")
        result: dict[str, Any] = {
            "period": command.period,
            "invoices": len(invoices),
            "creditNotes": len(notes),
            "bytes": len(body),
        }
        if len(body) <= self.settings.export_inline_bytes:
            return {**result, "csv": text}
        if self.exports is None:
            raise PayloadError(
                f"the export is {len(body)} bytes, over EXPORT_INLINE_BYTES, and EXPORT_BUCKET is not set"
            )
        key = (
            f"exports/invoices-{command.period}-{self.clock.now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.csv"
        )
        url = self.exports.publish(key, body, "text/csv; charset=utf-8")
        logger.info("export stored", extra={"key": key, "bytes": len(body)})
        return {**result, "url": url, "expiresInSeconds": EXPORT_LINK_SECONDS, "key": key}


def credit_note_summary(note: CreditNote) -> dict[str, Any]:
    return {
        "number": note.number,
        "invoice": note.invoice_number,
        "client": note.client_id,
        "period": note.period_key,
        "total": str(note.total),
        "subtotal": str(note.subtotal),
        "tax": str(note.tax),
        "currency": note.currency,
        "issuedOn": note.issued_on.isoformat(),
        "reason": note.reason,
    }


@functools.cache
def handlers() -> dict[type, Callable[[Automation, Any], dict[str, Any]]]:
    """Command type -> its handler: with commands.PAYLOADS (name -> keys and parser), the one table of
    payloads. Built by the first payload handled: the operator's command types are not imported before."""
    from postpay.billing import commands

    return {
        Daily: Automation.daily,
        commands.InvoiceMonth: Automation.invoice_month,
        commands.RunStatus: Automation.status,
        commands.QueueRun: Automation.queue_run,
        commands.Rebill: Automation.rebill,
        commands.MarkPaid: Automation.mark_paid,
        commands.Refund: Automation.refund,
        commands.AccountLookup: Automation.account,
        commands.ListInvoices: Automation.list_invoices,
        commands.ResendInvoice: Automation.resend_invoice,
        commands.VoidInvoice: Automation.void_invoice,
        commands.ExportInvoices: Automation.export_invoices,
    }
