"""Plain domain models. Adapters translate to and from them; nothing here knows about AWS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum


class AccountStatus(StrEnum):
    # Only in data written before sign-up attempts had their own records: never logs in, removed by upkeep.
    PENDING = "pending"
    VERIFIED = "verified"  # email verified and terms accepted; SolusVM user not provisioned yet
    ENROLLED = "enrolled"  # SolusVM user linked: the client can use the product


@dataclass(frozen=True, kw_only=True)
class Account:
    email: str
    client_id: int
    name: str
    company: str
    password_hash: str
    status: AccountStatus
    created_at: datetime
    verified_at: datetime | None = None
    enrolled_at: datetime | None = None
    solus_user_id: int | None = None
    provisioning_error: str | None = None
    provisioning_attempts: int = 0
    notify_when_enrolled: bool = False
    suspended_for: str | None = None  # the overdue invoice for which the product suspended the SolusVM user

    @property
    def enrolled(self) -> bool:
        return self.status is AccountStatus.ENROLLED


@dataclass(frozen=True, kw_only=True)
class SignupForm:
    name: str
    company: str
    email: str
    password: str


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    purpose: str  # "verify" or "reset"
    email: str
    expires_at: datetime
    used_at: datetime | None = None
    used_by: str | None = None  # hash of the browser binding that used it


@dataclass(frozen=True, kw_only=True)
class SignupAttempt:
    """One sign-up, waiting for its link to be followed: nothing of it is an account until then."""

    email: str
    name: str
    company: str
    password_hash: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Acceptance:
    client_id: int
    email: str
    document: str
    version: str
    url: str
    accepted_at: datetime
    source_ip: str
    user_agent: str


@dataclass(frozen=True, kw_only=True)
class Session:
    email: str
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, kw_only=True)
class SolusUser:
    id: int
    email: str
    status: str
    billing_user_id: int | None = None


class InvoiceStatus(StrEnum):
    UNPAID = "unpaid"
    PAID = "paid"
    VOID = "void"


@dataclass(frozen=True, kw_only=True)
class InvoiceLine:
    server_id: int
    name: str
    plan: str
    hours: int
    tokens: int
    unit_price: Decimal
    amount: Decimal
    deleted: bool = False


@dataclass(frozen=True, kw_only=True)
class Invoice:
    """An issued invoice. Never edited: only its status and payment record change."""

    number: str
    client_id: int
    email: str
    solus_user_id: int
    period_start: date
    period_end: date
    timezone: str
    currency: str
    token_price: Decimal
    lines: tuple[InvoiceLine, ...]
    total: Decimal
    status: InvoiceStatus
    issued_on: date
    due_on: date
    usage: str  # the raw SolusVM usage answer it was computed from (JSON)
    run_id: str
    paid_at: datetime | None = None
    payment_reference: str | None = None

    @property
    def period_key(self) -> str:
        return f"{self.period_start:%Y-%m}"
