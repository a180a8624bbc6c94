"""Card payments' domain: what crosses the gateway and payments-store ports (postpay.ports), and the
arithmetic of amounts at the gateway.

Amounts cross this port in the currency's minor units (int), never as floats; the gateway never sees card
data from us: cards are collected by the gateway's own page script and reach us as opaque ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from postpay import money

# The payment errors live in postpay.errors, where a page catches them without importing this module's
# types; named here too, for the code that raises them beside those types.
from postpay.errors import BadEvent as BadEvent
from postpay.errors import CardNotSaved as CardNotSaved
from postpay.errors import GatewayError as GatewayError
from postpay.errors import GatewayRefused as GatewayRefused
from postpay.errors import NotPayable as NotPayable
from postpay.models import InvoiceStatus

if TYPE_CHECKING:
    from postpay.config import Settings
    from postpay.models import Invoice

# Stripe refuses charges below about 0.50 USD (its documented minimum per currency); the product never sends
# one: such an invoice stays payable by transfer, or is carried into the next invoice when the operator turns
# CARRY_BELOW_MINIMUM on (carries_forward). Currencies without an entry use the USD figure.
MINIMUM_CHARGE = {
    "USD": Decimal("0.50"),
    "EUR": Decimal("0.50"),
    "GBP": Decimal("0.30"),
    "CHF": Decimal("0.50"),
    "CAD": Decimal("0.50"),
    "AUD": Decimal("0.50"),
    "JPY": Decimal("50"),
}


@dataclass(frozen=True, kw_only=True)
class PaymentEvent:
    """What collection needs of a gateway event; the rest of it is ignored."""

    id: str
    type: str
    intent_id: str | None = None
    invoice_number: str | None = None
    reason: str | None = None
    refunded_minor: int | None = None


@dataclass(frozen=True, kw_only=True)
class Card:
    """A saved card as the client sees it: no number, only what identifies it."""

    payment_method: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, kw_only=True)
class ChargeResult:
    """What one charge attempt came to. ``status``: succeeded | failed | requires_action | processing."""

    intent_id: str | None
    status: str
    reason: str | None = None
    client_secret: str | None = None
    invoice_number: str | None = None  # from the PaymentIntent's metadata, when looked up
    amount_minor: int | None = None


@dataclass(frozen=True, kw_only=True)
class CardOnFile:
    customer: str
    card: Card | None


@dataclass(frozen=True, kw_only=True)
class PendingRefund:
    """A refund claimed in the payments store before the gateway is asked: its number among the invoice's
    refunds (which names its idempotency key, ``refund_key``), what it refunds and why. It stays pending until
    the gateway's answer is recorded, so a retried payload finishes this refund rather than making another."""

    seq: int
    amount_minor: int
    whole: bool  # asked without an amount: all that was left
    reason: str
    refunded_before: int = 0  # the refunded total it was claimed on: the gateway's is this plus it, after
    lease_until: int = 0  # epoch seconds: until then its holder may be asking the gateway
    claimed_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ChargeRecord:
    attempt: int
    intent_id: str | None
    outcome: str | None  # None: claimed, not finished (a live lease, or a crash)
    reason: str | None
    refunded_minor: int = 0  # the gateway's own refunded total, from charge.refunded (the largest seen)
    lease_until: int = 0
    attempted_on: date | None = None  # the billing time zone's date the latest attempt was claimed on
    payment_method: str | None = (
        None  # the card the latest attempt charged (None: recorded before it was kept)
    )
    refunds_done_minor: int = 0  # our refunds the gateway answered, summed
    refund_seq: int = 0  # refunds claimed so far: the number of the pending or latest one
    pending_refund: PendingRefund | None = None

    @property
    def refunded_total(self) -> int:
        """What is known refunded: ours as answered, or the gateway's total when it says more (a refund
        made in its dashboard). Events are unordered, so neither alone is the whole truth."""
        return max(self.refunded_minor, self.refunds_done_minor)


@dataclass(frozen=True, kw_only=True)
class VoidPayment:
    """A card payment that succeeded on an invoice already void: recorded once, refunded in full."""

    invoice_number: str
    intent_id: str
    amount_minor: int
    refunded_minor: int | None = None  # None: not refunded yet


def minor_units(amount: Decimal, currency: str) -> int:
    """An exact amount in the currency's minor units: 12.34 USD -> 1234, 1200 JPY -> 1200, 1.234 KWD -> 1234.
    Refuses an amount with more decimals than the currency has (it would be rounded silently)."""
    scaled = amount.scaleb(money.minor_unit(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more decimals than the currency's minor unit")
    return int(scaled)


def chargeable(amount: Decimal, currency: str) -> bool:
    """Whether the gateway accepts the amount: at least its minimum charge for the currency."""
    return amount >= MINIMUM_CHARGE.get(currency.upper(), MINIMUM_CHARGE["USD"])


def carries_forward(settings: Settings, total: Decimal, currency: str) -> bool:
    """Whether an invoice of this total (with tax, and with any balance it carries in) is issued carried
    into the client's next invoice rather than payable: only with card payments on and the operator's
    CARRY_BELOW_MINIMUM, and only for an amount above zero the gateway would refuse (chargeable: compared
    exactly, as Decimals; the minimum itself is charged)."""
    if not (settings.stripe_enabled and settings.carry_below_minimum):
        return False
    return total > 0 and not chargeable(total, currency)


def idempotency_key(invoice_number: str, attempt: int) -> str:
    """One key per invoice and attempt: a retried request of the same attempt is the same charge at the
    gateway; the next dunning attempt is a new one."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    return f"postpay-invoice-{invoice_number}-attempt-{attempt}"


def refund_key(invoice_number: str, seq: int) -> str:
    """One key per invoice and refund number (the claim's, never an amount already refunded, which a
    webhook may change between a crash and the retry): a retried refund is the same refund."""
    if seq < 1:
        raise ValueError(f"refund number must be at least 1, got {seq}")
    return f"postpay-refund-{invoice_number}-{seq}"


def void_refund_key(invoice_number: str, intent_id: str) -> str:
    """The refund of a payment on a void invoice: one per invoice and PaymentIntent, so the webhook replayed,
    the client's return from 3-D Secure and a redelivery all ask the gateway for the same refund."""
    if not invoice_number or not intent_id:
        raise ValueError("a void payment's refund needs the invoice number and the PaymentIntent")
    return f"postpay-void-refund-{invoice_number}-{intent_id}"


def pay_online_url(settings: Settings, invoice: Invoice) -> str | None:
    """The invoice page's absolute link, where Pay now is, for an email or the PDF; None when the invoice
    cannot be paid by card: Stripe is not configured, the invoice is not unpaid, or its amount is below the
    gateway's minimum (then it is paid by transfer, as the payment instructions say)."""
    if not settings.stripe_enabled or invoice.status is not InvoiceStatus.UNPAID:
        return None
    if not chargeable(invoice.total, invoice.currency):
        return None
    return settings.url(f"invoices/{invoice.number}")
