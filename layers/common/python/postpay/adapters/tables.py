"""The DynamoDB item models and the registry of tables: one definition for code, stack and tests.

Every PynamoDB model lives here, and only the stores (``accounts_store``, ``sessions_store``,
``counters_store``, ``billing_store``) import them: the models never leak out of the adapters. The CDK
stack and the tests create tables from ``table_specs()``, so schema drift fails a test, not a deploy.
``bind`` points every model at its physical table, once, where the container builds the stores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class Base(Model):
    """Each subclass declares its own ``Meta`` (PynamoDB would share one otherwise); ``bind`` names it."""

    logical_name = ""
    ttl_attribute: str | None = None


_connection: Connection | None = None


def connection() -> Connection:
    """One PynamoDB connection for transactions, created on first use: a botocore client is costly to
    build (tens of milliseconds) and safe to share between threads."""
    global _connection
    if _connection is None:
        _connection = Connection()
    return _connection


_sending = threading.local()


def on_send(callback: Callable[[], None] | None) -> None:
    """``callback`` runs once, on this thread, as its next transaction goes out (built and signed: botocore's
    before-send), so work that waits for the outcome can start while it is on the network; None forgets it."""
    if callback is not None:
        connection().client.meta.events.register(
            "before-send.dynamodb.TransactWriteItems", _before_send, unique_id="postpay-on-send"
        )
    _sending.callback = callback


def _before_send(**_: Any) -> None:
    callback, _sending.callback = getattr(_sending, "callback", None), None
    if callback is not None:
        try:
            callback()
        except Exception:  # the transaction goes out regardless: the work is only ahead of time
            from postpay.observability import logger

            logger.warning("work started with a transaction failed", exc_info=True)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def conditional_failed(error: Exception) -> bool:
    """A PynamoDB write refused by its condition (not a transport or capacity error)."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


# ------------------------------------------------------------------------------ accounts and sign-ups


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


# ----------------------------------------------------------------------------------------- billing


class InvoicesByNumber(GlobalSecondaryIndex["InvoiceItem"]):
    class Meta:
        index_name = "number-index"
        projection = KeysOnlyProjection()

    number = UnicodeAttribute(hash_key=True)


class InvoicesByClient(GlobalSecondaryIndex["InvoiceItem"]):
    class Meta:
        index_name = "client-index"
        projection = AllProjection()

    client_id = NumberAttribute(hash_key=True)
    period_key = UnicodeAttribute(range_key=True)


class InvoicesByStatus(GlobalSecondaryIndex["InvoiceItem"]):
    class Meta:
        index_name = "status-index"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    due_on = UnicodeAttribute(range_key=True)


class InvoiceItem(Base):
    """One item per (client, period): the invoice, or the record that there was nothing to bill; and under
    longer keys, a credit note ("<client>#<YYYY-MM>#<CN number>") and a void invoice a re-bill replaced
    ("<client>#<YYYY-MM>#<its number>")."""

    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "invoices"

    account_period = UnicodeAttribute(hash_key=True)  # "<client id>#<YYYY-MM>"
    client_id = NumberAttribute()
    period_key = UnicodeAttribute()
    outcome = UnicodeAttribute()  # "invoiced", "nothing_to_bill" or "credit_note"
    email = UnicodeAttribute()
    run_id = UnicodeAttribute()
    usage = UnicodeAttribute()  # the raw SolusVM answer, JSON
    created_at = UTCDateTimeAttribute()
    # invoices only (absent on "nothing to bill": the indexes below are sparse)
    number = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    due_on = UnicodeAttribute(null=True)
    document = UnicodeAttribute(null=True)  # the invoice itself, JSON with exact decimal strings
    paid_at = UTCDateTimeAttribute(null=True)
    payment_reference = UnicodeAttribute(null=True)
    email_lease_until = NumberAttribute(null=True)
    email_sent_at = UTCDateTimeAttribute(null=True)
    email_message_id = UnicodeAttribute(null=True)
    # What happened to the invoice after it was issued (emailed again, ...): JSON entries, appended only.
    history = ListAttribute(of=UnicodeAttribute, null=True)
    void_reason = UnicodeAttribute(null=True)
    voided_at = UTCDateTimeAttribute(null=True)
    credit_note = UnicodeAttribute(null=True)  # on a void invoice: the credit note that cancelled it
    carried_to = UnicodeAttribute(null=True)  # on a carried invoice: the invoice that took its total
    by_number = InvoicesByNumber()
    by_client = InvoicesByClient()
    by_status = InvoicesByStatus()


class RunItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "invoice-runs"

    run_id = UnicodeAttribute(hash_key=True)
    trigger = UnicodeAttribute()
    period = UnicodeAttribute()  # JSON: start, end, timezone
    state = UnicodeAttribute()  # "queuing" until every job is on the queue, then "queued"
    dry_run = BooleanAttribute(null=True)  # a preview: jobs record what they would invoice, nothing else
    joins = UnicodeAttribute(null=True)  # on a request item: the run an identical request joins
    queued = NumberAttribute(default=0)
    would_invoice = NumberAttribute(default=0)
    invoiced = NumberAttribute(default=0)
    already_invoiced = NumberAttribute(default=0)
    nothing_to_bill = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    started_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()


class OutcomeItem(Base):
    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "run-outcomes"

    run_id = UnicodeAttribute(hash_key=True)
    client_id = NumberAttribute(range_key=True)
    outcome = UnicodeAttribute()  # invoiced | already_invoiced | nothing_to_bill | failed | would_invoice
    invoice_number = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    detail = UnicodeAttribute(null=True)  # a dry run's lines and total, JSON
    at = UTCDateTimeAttribute()


# ---------------------------------------------------------------------------------------- payments


class PaymentItem(Base):
    """``card#<client id>``: the card on file; ``charge#<invoice number>``: the invoice's latest charge;
    ``voidpay#<PaymentIntent id>``: a payment on a void invoice; ``event#<id>``: a processed gateway event."""

    class Meta:
        table_name = ""
        billing_mode = "PAY_PER_REQUEST"

    logical_name = "payments"

    pk = UnicodeAttribute(hash_key=True)
    # card (and on a charge: the card its latest attempt charged)
    customer = UnicodeAttribute(null=True)
    payment_method = UnicodeAttribute(null=True)
    brand = UnicodeAttribute(null=True)
    last4 = UnicodeAttribute(null=True)
    exp_month = NumberAttribute(null=True)
    exp_year = NumberAttribute(null=True)
    # charge
    attempt = NumberAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    intent_id = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)  # succeeded | failed | requires_action | processing
    reason = UnicodeAttribute(null=True)
    attempted_on = UnicodeAttribute(null=True)  # ISO date (billing time zone) the attempt was claimed on
    refunded_minor = NumberAttribute(null=True)  # what the gateway reports refunded, in minor units
    refunds_done_minor = NumberAttribute(null=True)  # our refunds the gateway answered, summed
    refund_seq = NumberAttribute(null=True)  # refunds claimed: the number of the pending or latest one
    refund_pending_minor = NumberAttribute(null=True)  # the claimed refund the gateway has not answered
    refund_pending_whole = BooleanAttribute(null=True)
    refund_pending_base = NumberAttribute(null=True)  # the refunded total the pending refund was claimed on
    refund_pending_reason = UnicodeAttribute(null=True)
    refund_pending_at = UTCDateTimeAttribute(null=True)
    refund_lease_until = NumberAttribute(null=True)  # epoch seconds: the pending refund's holder's lease
    pay_intent = UnicodeAttribute(null=True)  # the client's open Pay now PaymentIntent
    pay_count = NumberAttribute(null=True)  # how many Pay now PaymentIntents were opened
    # voidpay#<PaymentIntent id>: a payment that succeeded on a void invoice, and its refund
    invoice_number = UnicodeAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    refunded_at = UTCDateTimeAttribute(null=True)
    # event: the gateway event ids already processed
    event_type = UnicodeAttribute(null=True)
    updated_at = UTCDateTimeAttribute(null=True)


MODELS: list[type[Base]] = [
    AccountItem,
    TokenItem,
    SessionItem,
    AcceptanceItem,
    RateLimitItem,
    CounterItem,
    InvoiceItem,
    RunItem,
    OutcomeItem,
    PaymentItem,
]


def models() -> list[type[Base]]:
    return list(MODELS)


def bind(table_prefix: str) -> None:
    """Point every model at its physical table."""
    for model in MODELS:
        model.Meta.table_name = table_prefix + model.logical_name


@dataclass(frozen=True)
class TableSpec:
    logical_name: str
    schema: dict[str, Any]  # PynamoDB's schema: attribute_definitions, key_schema, global_secondary_indexes
    ttl_attribute: str | None


def table_specs() -> list[TableSpec]:
    """The schema of every table, from the models: what the stack deploys and the tests create."""
    return [TableSpec(m.logical_name, dict(m._get_schema()), m.ttl_attribute) for m in models()]


def create_tables(table_prefix: str) -> None:
    """Create every table (local stack and tests), with TTL enabled as the stack does."""
    bind(table_prefix)
    for model in models():
        if not model.exists():
            model.create_table(wait=True)
            if model.ttl_attribute:
                model._get_connection().connection.client.update_time_to_live(  # type: ignore[attr-defined]
                    TableName=model.Meta.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": model.ttl_attribute},
                )
