"""What the automation function is asked to do: an operator's payload (or the daily schedule), validated.

A malformed payload fails the invoke with a message saying what is wrong, before anything happens. The run
handler imports this module with the first payload that is not the schedule's (``postpay.billing.schedule``
parses that one, its usual first request, without the dozen command types here)."""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from postpay.billing.schedule import Daily, PayloadError, daily, is_scheduled, shown
from postpay.periods import Period, local_date, month_before


@dataclass(frozen=True)
class InvoiceMonth:
    period: Period
    dry_run: bool
    invoicing_date: date | None = None  # as the operator gave it: identical requests join one run


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    after: int | None = None  # a page of the run's accounts: those with a client id above this


@dataclass(frozen=True)
class QueueRun:
    """The automation function, to itself: queue the jobs of a run it accepted (asynchronously)."""

    run_id: str


@dataclass(frozen=True)
class Payment:
    number: str
    reference: str


@dataclass(frozen=True)
class MarkPaid:
    """One payment, or a list of them (a bank statement): all are checked before any is recorded."""

    payments: tuple[Payment, ...]


@dataclass(frozen=True)
class Rebill:
    client_id: int
    period: Period


@dataclass(frozen=True)
class Refund:
    number: str
    amount: Decimal | None  # None: the whole amount paid by card
    reason: str


@dataclass(frozen=True)
class AccountLookup:
    email: str | None
    client_id: int | None


@dataclass(frozen=True)
class ListInvoices:
    status: str | None  # unpaid | overdue | paid
    period: str | None  # YYYY-MM
    client_id: int | None
    limit: int
    after: str | None  # the cursor of the previous page


@dataclass(frozen=True)
class ResendInvoice:
    number: str


@dataclass(frozen=True)
class VoidInvoice:
    number: str
    reason: str


@dataclass(frozen=True)
class ExportInvoices:
    period: str  # YYYY-MM


Command = (
    ExportInvoices
    | VoidInvoice
    | Daily
    | InvoiceMonth
    | RunStatus
    | QueueRun
    | MarkPaid
    | Rebill
    | Refund
    | AccountLookup
    | ListInvoices
    | ResendInvoice
)
Parser = Callable[[dict[str, Any], str, datetime], Command]


@dataclass(frozen=True)
class Payload:
    keys: frozenset[str]  # the keys the payload may have (its name among them)
    parse: Parser


_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII only: \d takes any Unicode digit
_INVOICE_STATUSES = ("unpaid", "overdue", "paid", "carried")
MAX_PAGE = 1000


def _daily(event: dict[str, Any], timezone: str, now: datetime) -> Daily:
    if event.get("schedule") != "daily":
        raise PayloadError(f'schedule must be "daily", got {shown(event.get("schedule"))}')
    return daily(event, timezone, now, scheduled=any(key in event for key in ("scheduledTime", "time")))


def _run_status(event: dict[str, Any], timezone: str, now: datetime) -> RunStatus:
    after = event.get("after")
    if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
        raise PayloadError(f"after must be a client id (a whole number), got {shown(after)}")
    return RunStatus(_text(event, "runStatus"), after)


def _mark_paid(event: dict[str, Any], timezone: str, now: datetime) -> MarkPaid:
    body = event["markPaid"]
    if isinstance(body, str):
        return MarkPaid((Payment(_text(event, "markPaid"), _text(event, "reference")),))
    if "reference" in event:
        raise PayloadError("a markPaid list carries a reference per payment, not one for all")
    shape = '[{"invoice": "INV-000123", "reference": "bank 2022-11-20"}, …]'
    if not isinstance(body, list) or not 1 <= len(body) <= MAX_PAGE:
        raise PayloadError(
            f"markPaid must be an invoice number or a list like {shape} (1 to {MAX_PAGE}), got {shown(body)}"[
                :400
            ]
        )
    payments = []
    for index, entry in enumerate(body):
        if not isinstance(entry, dict) or set(entry) != {"invoice", "reference"}:
            raise PayloadError(
                f"markPaid[{index}] must be an object like {shape[1:-4]}, got {shown(entry)}"[:400]
            )
        payments.append(
            Payment(
                _text(entry, "invoice", f"markPaid[{index}].invoice"),
                _text(entry, "reference", f"markPaid[{index}].reference"),
            )
        )
    numbers = [p.number for p in payments]
    duplicated = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicated:
        raise PayloadError(f"markPaid names {', '.join(duplicated)} more than once")
    return MarkPaid(tuple(payments))


def _account(event: dict[str, Any], timezone: str, now: datetime) -> AccountLookup:
    raw = event["account"]
    client = _client_id(raw)
    if client is not None:
        return AccountLookup(None, client)
    if isinstance(raw, str) and "@" in raw and len(raw) <= 320:
        return AccountLookup(raw.strip().lower(), None)
    raise PayloadError(f"account must be an email address or a client id, got {shown(raw)}"[:400])


def _list_invoices(event: dict[str, Any], timezone: str, now: datetime) -> ListInvoices:
    body = event["listInvoices"]
    allowed = {"status", "period", "client", "limit", "after"}
    if not isinstance(body, dict) or set(body) - allowed:
        raise PayloadError(
            f"listInvoices must be an object with optional status ({', '.join(_INVOICE_STATUSES)}), "
            f"period (YYYY-MM), client, limit, after; got {shown(body)}"[:400]
        )
    status = body.get("status")
    if status is not None and status not in _INVOICE_STATUSES:
        raise PayloadError(
            f"listInvoices status must be one of {', '.join(_INVOICE_STATUSES)}, got {shown(status)}"
        )
    period = body.get("period")
    if period is not None:
        period = _month(period, "listInvoices period").start.strftime("%Y-%m")
    client = body.get("client")
    if client is not None:
        client = _client(client, "listInvoices client")
    limit = body.get("limit", 100)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise PayloadError(f"listInvoices limit must be an integer from 1 to {MAX_PAGE}, got {shown(limit)}")
    after = body.get("after")
    if after is not None and (not isinstance(after, str) or not after or len(after) > 200):
        raise PayloadError(
            f"listInvoices after must be the cursor of the previous page, got {shown(after)}"[:400]
        )
    return ListInvoices(status, period, client, limit, after)


def _resend(event: dict[str, Any], timezone: str, now: datetime) -> ResendInvoice:
    return ResendInvoice(_text(event, "resendInvoice"))


def _rebill_payload(event: dict[str, Any], timezone: str, now: datetime) -> Rebill:
    return _rebill(event["rebill"], timezone, now)


def _refund(event: dict[str, Any], timezone: str, now: datetime) -> Refund:
    """{"refund": "INV-000123", "amount": "5.00", "reason": "..."}: amount optional (the whole payment)."""
    amount = None
    if "amount" in event:
        raw = event["amount"]
        try:
            amount = Decimal(raw) if isinstance(raw, str) and _AMOUNT.fullmatch(raw.strip()) else None
        except InvalidOperation:
            amount = None
        if amount is None or amount <= 0:
            raise PayloadError(
                f'refund amount must be a positive decimal string like "5.00", got {shown(raw)}'
            )
    reason = _text(event, "reason") if "reason" in event else "refund by the operator"
    return Refund(_text(event, "refund"), amount, reason)


_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,3})?")


# The one table of operator payloads: name -> the keys it takes and its parser. The automation function maps
# each command type to its handler (postpay.billing.automation.handlers); a new payload is one entry in each.
PAYLOADS: dict[str, Payload] = {
    "schedule": Payload(frozenset({"schedule", "scheduledTime", "time"}), _daily),
    "invoicingDate": Payload(
        frozenset({"invoicingDate", "dryRun"}), lambda e, tz, now: _invoice_month(e, tz, now)
    ),
    "runStatus": Payload(frozenset({"runStatus", "after"}), _run_status),
    "markPaid": Payload(frozenset({"markPaid", "reference"}), _mark_paid),
    "rebill": Payload(frozenset({"rebill"}), _rebill_payload),
    "refund": Payload(frozenset({"refund", "amount", "reason"}), _refund),
    "account": Payload(frozenset({"account"}), _account),
    "listInvoices": Payload(frozenset({"listInvoices"}), _list_invoices),
    "resendInvoice": Payload(frozenset({"resendInvoice"}), _resend),
    # The automation function, to itself (an asynchronous invoke): queue the jobs of a run it accepted.
    "queueRun": Payload(frozenset({"queueRun"}), lambda e, tz, now: QueueRun(_text(e, "queueRun"))),
    "voidInvoice": Payload(
        frozenset({"voidInvoice", "reason"}),
        lambda e, tz, now: VoidInvoice(_text(e, "voidInvoice"), _text(e, "reason")),
    ),
    "exportInvoices": Payload(
        frozenset({"exportInvoices"}),
        lambda e, tz, now: ExportInvoices(_month(e["exportInvoices"], "exportInvoices").key),
    ),
}
OPERATOR_PAYLOADS = [name for name in PAYLOADS if name != "queueRun"]  # what an operator may send
# {"rebill": {"client": 123, "period": "2022-10"}}; later commands on one invoice may extend this object.
_REBILL_KEYS = {"client", "period"}


def parse(event: Any, *, timezone: str, now: datetime) -> Command:
    if not isinstance(event, dict):
        raise PayloadError("the payload must be a JSON object")
    if is_scheduled(event):
        return daily(event, timezone, now)
    kinds = [key for key in PAYLOADS if key in event]
    if len(kinds) != 1:
        raise PayloadError(
            f"the payload must have exactly one of: {', '.join(OPERATOR_PAYLOADS)} (see README, Operating); "
            f"got keys {sorted(event)}"[:600]
        )
    kind = kinds[0]
    payload = PAYLOADS[kind]
    unknown = set(event) - payload.keys
    if unknown:
        raise PayloadError(f"unknown keys {sorted(unknown)}; {kind} accepts {sorted(payload.keys)}"[:600])
    return payload.parse(event, timezone, now)


def payload_name(event: dict[str, Any]) -> str:
    """The name of an accepted payload (for the audit log)."""
    if is_scheduled(event):
        return "schedule"
    return next(key for key in PAYLOADS if key in event)


def _invoice_month(event: dict[str, Any], timezone: str, now: datetime) -> InvoiceMonth:
    raw = event["invoicingDate"]
    if not isinstance(raw, str):
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {shown(raw)}")
    try:
        invoicing_date = date.fromisoformat(raw)
    except ValueError as error:
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {shown(raw)}") from error
    if len(raw) != 10:
        raise PayloadError(f"invoicingDate must be a date like 2022-11-01, got {shown(raw)}")
    dry_run = event.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise PayloadError(f"dryRun must be true or false, got {shown(dry_run)}")
    period = month_before(invoicing_date, timezone)
    today = local_date(now, timezone)
    if period.end >= today:
        raise PayloadError(
            f"invoicingDate {raw} would invoice {period.label}, which has not ended yet in {timezone} "
            f"(today is {today})"
        )
    return InvoiceMonth(period, dry_run, invoicing_date)


def _rebill(body: Any, timezone: str, now: datetime) -> Rebill:
    if not isinstance(body, dict) or set(body) != _REBILL_KEYS:
        raise PayloadError(
            f'rebill must be an object like {{"client": 123, "period": "2022-10"}}, got {shown(body)}'[:400]
        )
    client = _client(body["client"], "rebill client")
    period = _month(body["period"], "rebill period", timezone)
    today = local_date(now, timezone)
    if period.end >= today:
        raise PayloadError(f"rebill period {period.label} has not ended yet in {timezone} (today is {today})")
    return Rebill(client, period)


def _client_id(raw: Any) -> int | None:
    """A client id as every payload takes it: a positive integer, or a string of ASCII digits ("3")."""
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 20:
        raw = int(raw.strip())
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return raw
    return None


def _client(client: Any, what: str) -> int:
    found = _client_id(client)
    if found is None:
        raise PayloadError(
            f'{what} must be a client id (a positive integer, or its digits as a string like "3"), '
            f"got {shown(client)}"[:400]
        )
    return found


def _month(raw: Any, what: str, timezone: str = "UTC") -> Period:
    match = _MONTH.fullmatch(raw) if isinstance(raw, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise PayloadError(f"{what} must be a month like 2022-10, got {shown(raw)}"[:400])
    year, month = int(match.group(1)), int(match.group(2))
    start = date(year, month, 1)
    return Period(start, start.replace(day=monthrange(year, month)[1]), timezone)  # 9999-12 has no next month


def _text(event: dict[str, Any], key: str, what: str | None = None) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise PayloadError(f"{what or key} must be a non-empty string, got {shown(value)}"[:400])
    return value.strip()
