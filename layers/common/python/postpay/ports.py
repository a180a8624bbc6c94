"""The ports: what the logic (``services/``, ``billing/``) needs from the outside, as Protocols.

The logic depends on these, never on an adapter module; the adapters (DynamoDB stores, SolusVM, SES, SQS,
Lambda) satisfy them structurally, and the unit tests pass in-memory fakes (tests/unit/fakes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from postpay.errors import AlreadyBilled, OutcomeRecorded
from postpay.models import (
    Acceptance,
    Account,
    AccountStatus,
    CreditNote,
    Invoice,
    InvoiceProfile,
    Pricing,
    RunRecord,
    Session,
    SignupAttempt,
    SignupForm,
    SolusUser,
    ToIssue,
    TokenRecord,
)

if TYPE_CHECKING:  # only named in the protocols: a function that takes no payment never imports them
    from postpay.payments import (
        Card,
        CardOnFile,
        ChargeRecord,
        ChargeResult,
        PaymentEvent,
        PendingRefund,
        VoidPayment,
    )

# ----------------------------------------------------------------------------------------------- stores


class AccountStore(Protocol):
    """Accounts, sign-up attempts and link tokens, terms acceptances, provisioning locks, suspensions."""

    def get_account(self, email: str) -> Account | None: ...
    def account_by_client(self, client_id: int) -> Account | None:
        """The account with this client id (an operator's lookup)."""
        ...

    def get_accounts(self, emails: list[str]) -> dict[str, Account]:
        """The accounts of these emails, by email (missing ones left out)."""
        ...

    def accounts_with_status(self, status: AccountStatus) -> Iterator[Account]: ...
    def billable_before(self, moment: datetime) -> Iterator[tuple[str, int, int]]:
        """(email, client id, SolusVM user id) of each account enrolled before ``moment`` with a SolusVM
        user: who is billed for a period ending then, as the listing pages come."""
        ...

    def expired_pending(self, now: datetime) -> Iterator[Account]: ...
    def delete_expired_pending(self, email: str, now: datetime) -> bool: ...
    def suspended_accounts(self) -> Iterator[Account]: ...
    def mark_suspended(self, email: str, invoice_number: str, now: datetime) -> None: ...
    def clear_suspension(self, email: str) -> None: ...
    def create_attempt(
        self, form: SignupForm, *, password_hash: str, token_hash: str, expires: datetime
    ) -> None: ...
    def get_attempt(self, token_hash: str) -> SignupAttempt | None: ...
    def delete_expired_tokens(self, now: datetime) -> int: ...
    def get_token(self, token_hash: str, purpose: str) -> TokenRecord | None: ...
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
        """Consumes the link, creates the verified account and records the acceptances, atomically.
        Raises TokenUsed, TokenExpired, TokenInvalid, or AccountExists."""
        ...

    def discard_attempt(self, token_hash: str) -> None: ...
    def start_reset(self, email: str, token_hash: str, expires: datetime) -> None: ...
    def complete_reset(self, *, token_hash: str, email: str, password_hash: str, now: datetime) -> None: ...
    def reset_token_current(self, email: str, token_hash: str) -> bool: ...
    def set_password(self, email: str, password_hash: str, *, replacing: str | None = None) -> bool: ...
    def set_billing_details(self, email: str, address: tuple[str, ...], tax_id: str) -> None: ...
    def acceptances(self, client_id: int) -> list[Acceptance]: ...
    def lock_provisioning(self, email: str, now: datetime, hold: timedelta) -> bool: ...
    def provisioning_locked(self, email: str, now: datetime) -> bool: ...
    def mark_enrolled(self, email: str, solus_user_id: int, now: datetime) -> None: ...
    def mark_provisioning_failed(self, email: str, error: str, *, notify_when_enrolled: bool) -> None: ...


class SessionStore(Protocol):
    def create_session(
        self, session_hash: str, *, email: str, now: datetime, idle: timedelta, absolute: timedelta
    ) -> None: ...
    def get_session(self, session_hash: str, now: datetime) -> Session | None: ...
    def touch_session(self, session_hash: str, now: datetime, idle: timedelta) -> None: ...
    def delete_session(self, session_hash: str) -> None: ...
    def delete_sessions_of(self, email: str, *, keep: str | None = None) -> int: ...


class Counters(Protocol):
    """Atomic counters and rate limits in fixed windows."""

    def next_value(self, name: str) -> int: ...
    def hit(self, key: str, window: timedelta, now: datetime) -> int: ...
    def hits(self, key: str, window: timedelta, now: datetime) -> int: ...
    def clear_hits(self, key: str, window: timedelta, now: datetime) -> None: ...


class InvoiceStore(Protocol):
    """Invoices, runs and their per-account outcomes. Exactly once is the store's job: ``issue`` and
    ``record_nothing`` raise AlreadyBilled when the (client, period) has its record, OutcomeRecorded when the
    run already counted the account."""

    def start_run(
        self, run_id: str, *, trigger: str, period: dict[str, str], now: datetime, dry_run: bool = False
    ) -> bool: ...
    def claim_request(self, key: str, run_id: str, *, now: datetime, window: timedelta) -> str: ...
    def outcomes(
        self, run_id: str, *, after: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]: ...
    def finish_queuing(self, run_id: str, queued: int, now: datetime) -> None: ...
    def run(self, run_id: str) -> RunRecord | None: ...
    def daily_heartbeat(self, now: datetime) -> datetime | None: ...
    def issue(
        self,
        invoice_for: Callable[..., Invoice],
        *,
        run_id: str,
        now: datetime,
        email_lease: timedelta,
        replace_nothing: bool = False,
    ) -> Invoice: ...
    def record_nothing(
        self, *, client_id: int, email: str, period_key: str, usage: str, run_id: str, now: datetime
    ) -> None: ...
    def issue_batch(
        self,
        entries: list[ToIssue],
        *,
        now: datetime,
        email_lease: timedelta,
        sending: Callable[[dict[int, Invoice]], None] | None = None,
    ) -> list[Invoice | AlreadyBilled | OutcomeRecorded | None]:
        """Issues a batch in as few transactions as it takes; per entry: the invoice, None (nothing to
        bill recorded), or the AlreadyBilled / OutcomeRecorded it met. ``sending`` (optional) is told the
        invoices by entry index of the first transaction as it goes out."""
        ...

    def record_outcome(
        self,
        run_id: str,
        client_id: int,
        outcome: str,
        now: datetime,
        *,
        number: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> bool: ...
    def outcome_of(self, run_id: str, client_id: int) -> str | None: ...
    def billed(self, client_id: int, period_key: str) -> tuple[str, Invoice | None] | None: ...
    def invoice_by_number(self, number: str) -> Invoice | None: ...
    def invoice_of(self, client_id: int, number: str) -> Invoice | None: ...
    def invoices_of(self, client_id: int) -> list[Invoice]: ...
    def unpaid_due_before(self, day: date) -> Iterator[Invoice]: ...
    def claim_email(self, invoice: Invoice, now: datetime, lease: timedelta) -> str:
        """ "claimed", "sent" (nothing to do) or "leased" (another attempt may be sending right now)."""
        ...

    def mark_emailed(self, invoice: Invoice, message_id: str, now: datetime) -> None: ...
    def mark_paid(self, number: str, reference: str, now: datetime) -> Invoice: ...


class InvoiceDesk(InvoiceStore, Protocol):
    """The invoice store as the operator's commands use it: voids with their credit notes, an invoice's
    history, listings across clients."""

    def void(
        self,
        number: str,
        *,
        reason: str,
        now: datetime,
        credit_note_for: Callable[[int, Invoice], CreditNote],
    ) -> tuple[Invoice, CreditNote]:
        """unpaid -> void with its credit note (the next of its own gapless series), in one transaction.
        Raises LookupError (unknown number) or ValueError (not unpaid)."""
        ...

    def mark_credit_note_emailed(self, note: CreditNote, message_id: str, now: datetime) -> None: ...
    def credit_notes(
        self, *, period_key: str | None = None, client_id: int | None = None
    ) -> list[CreditNote]: ...
    def invoice_history(self, number: str) -> list[dict[str, Any]]: ...
    def add_history(self, invoice: Invoice, entry: dict[str, Any]) -> None: ...
    def find_invoices(
        self,
        *,
        status: str | None,
        period_key: str | None,
        client_id: int | None,
        due_before: date | None = None,
    ) -> list[Invoice]: ...


class PaymentsStore(Protocol):
    """Each client's card on file, each invoice's charge claim (exactly one charge per attempt), and the
    gateway events already processed."""

    def card_on_file(self, client_id: int) -> CardOnFile | None: ...
    def clients_with_cards(self, client_ids: list[int]) -> set[int]: ...
    def save_customer(self, client_id: int, customer: str, now: datetime) -> str: ...
    def save_card(self, client_id: int, card: Card, now: datetime) -> None: ...
    def remove_card(self, client_id: int, now: datetime) -> None: ...
    def charge_of(self, number: str) -> ChargeRecord | None: ...
    def claim_charge(
        self,
        number: str,
        attempt: int,
        now: datetime,
        lease: timedelta,
        *,
        on: date | None = None,
        payment_method: str | None = None,
    ) -> bool: ...
    def release_charge(self, number: str, attempt: int) -> None: ...
    def record_charge(self, number: str, attempt: int, result: ChargeResult, now: datetime) -> None: ...
    def claim_refund(
        self, number: str, refund: PendingRefund, *, refunded_at_most: int, now: datetime, lease: timedelta
    ) -> bool: ...
    def take_refund(self, number: str, seq: int, now: datetime, lease: timedelta) -> bool: ...
    def finish_refund(self, number: str, seq: int, refunded_minor: int, now: datetime) -> bool: ...
    def release_refund(self, number: str, seq: int) -> None: ...
    def record_refund(self, number: str, refunded_minor: int, now: datetime) -> None:
        """The gateway's refunded total (charge.refunded, or at least a refund's base plus that refund),
        kept when larger than the one recorded."""
        ...

    def record_void_payment(self, number: str, intent_id: str, amount_minor: int, now: datetime) -> bool:
        """Records a payment that succeeded on a void invoice; True for the one call that recorded it."""
        ...

    def void_payment(self, intent_id: str) -> VoidPayment | None: ...
    def mark_void_payment_refunded(self, intent_id: str, refunded_minor: int, now: datetime) -> bool:
        """Records its refund; True for the one call that recorded it (the one that emails the client)."""
        ...

    def event_seen(self, event_id: str) -> bool: ...
    def mark_event(self, event_id: str, event_type: str, now: datetime) -> None: ...


# ---------------------------------------------------------------------------------- outside systems


class SolusVM(Protocol):
    def find_user_by_email(self, email: str) -> SolusUser | None: ...
    def get_user(self, user_id: int) -> SolusUser: ...
    def create_user(self, *, email: str, billing_user_id: int, limit_group_id: int | None) -> SolusUser: ...
    def link_user(self, user_id: int, billing_user_id: int) -> SolusUser: ...
    def set_status(self, user_id: int, status: str) -> SolusUser: ...
    def one_time_login_token(self, user_id: int) -> str: ...
    def usage(self, user_id: int, date_from: date, date_to: date) -> dict: ...
    def deadline(self, seconds: float) -> AbstractContextManager[None]:
        """One time budget for every call made inside it (a page's), retries included."""
        ...


class Mailer(Protocol):
    def send(self, to: str, template: str, *, attachments: tuple[Any, ...] = (), **context: Any) -> str:
        """Renders and sends ``template``; returns the message id."""
        ...

    def compose(self, to: str, template: str, *, attachments: tuple[Any, ...] = (), **context: Any) -> Any:
        """What ``send`` would send, rendered ahead (another thread may compose while this one sends)."""
        ...

    def deliver(self, message: Any) -> str:
        """Sends a message ``compose`` made; returns the message id."""
        ...


class PaymentGateway(Protocol):
    """A card gateway (Stripe today: postpay.adapters.stripe_gateway). Amounts in minor units (int)."""

    def create_customer(self, *, client_id: int, email: str) -> str: ...

    def setup_intent(self, *, customer: str) -> str:
        """A SetupIntent for an off-session card; returns its client secret (for the page script)."""
        ...

    def card(self, payment_method: str) -> Card: ...

    def saved_card(self, *, setup_intent: str, customer: str) -> Card:
        """The card a SetupIntent of this customer saved, attached to it; raises CardNotSaved if the
        SetupIntent is not this customer's or has not succeeded."""
        ...

    def detach(self, payment_method: str) -> None: ...

    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        invoice_number: str,
        attempt: int,
        off_session: bool = True,
    ) -> ChargeResult:
        """A PaymentIntent confirmed now (off-session: the automatic charge; on-session: Pay now, where the
        bank may ask for 3-D Secure), under ``idempotency_key(invoice_number, attempt)``."""
        ...

    def find_charge(self, *, customer: str, invoice_number: str, attempt: int) -> ChargeResult | None:
        """The PaymentIntent of that invoice and attempt, if one was created (a crash after creating it)."""
        ...

    def get_charge(self, intent_id: str) -> ChargeResult: ...

    def cancel_charge(self, intent_id: str) -> ChargeResult:
        """Cancels a PaymentIntent that has not been paid (waiting for 3-D Secure, say), so it never can be;
        returns the PaymentIntent as it then stands (``canceled``, or ``succeeded`` if it won the race)."""
        ...

    def refund(self, *, intent_id: str, amount_minor: int, reason: str, key: str) -> int:
        """Refunds ``amount_minor`` of the PaymentIntent under idempotency key ``key`` (kept on the refund,
        for ``find_refund``); returns the amount the refund records."""
        ...

    def find_refund(self, *, intent_id: str, key: str) -> int | None:
        """The amount of the PaymentIntent's refund made under ``key``, if one was made (a crash after it;
        Stripe forgets idempotency keys after a day, the refund keeps it)."""
        ...

    def parse_event(self, payload: str, signature: str | None) -> PaymentEvent:
        """A webhook request's event once its signature and timestamp are verified; raises BadEvent."""
        ...


class Queue(Protocol):
    def send_all(self, messages: Iterable[dict[str, Any]]) -> int:
        """Sends the messages as they come (each ten at once); returns how many were sent."""
        ...


class Dispatcher(Protocol):
    def queue_run(self, run_id: str) -> None: ...


class Exports(Protocol):
    """Where an operator's export too large to return inline goes."""

    def publish(self, key: str, body: bytes, content_type: str) -> str:
        """Stores the object, private and encrypted; returns a link that reads it for EXPORT_LINK_SECONDS."""
        ...


PricingSource = Callable[[], Pricing]
ProfileSource = Callable[[], InvoiceProfile]
