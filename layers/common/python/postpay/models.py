"""Plain domain models. Adapters translate to and from them; nothing here knows about AWS."""

from __future__ import annotations

from collections.abc import Callable
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
    # Billing details the client edits on /account (optional): printed on their next invoices.
    billing_address: tuple[str, ...] = ()
    tax_id: str = ""
    suspended_at: datetime | None = None

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
    # Below the gateway's minimum charge with CARRY_BELOW_MINIMUM on: not payable, never overdue; its total
    # is a line of the client's next invoice (``carried_to`` names it once that is issued).
    CARRIED = "carried"


@dataclass(frozen=True, kw_only=True)
class Seller:
    """Who issues the invoices: the operator's business, from SSM (postpay.adapters.params)."""

    name: str
    address: tuple[str, ...] = ()
    tax_id: str = ""
    email: str = ""
    website: str = ""
    logo: str = ""  # a data: URI (PNG or JPEG), or empty


@dataclass(frozen=True, kw_only=True)
class Buyer:
    """Who is billed, as the account said when the invoice was issued."""

    name: str
    company: str = ""
    email: str = ""
    address: tuple[str, ...] = ()
    tax_id: str = ""


@dataclass(frozen=True, kw_only=True)
class TaxRule:
    """The tax in force: a rate in percent, its label, and whether the lines already include it."""

    rate: Decimal = Decimal(0)
    label: str = "VAT"
    inclusive: bool = False
    reverse_charge: bool = False  # exempt a client whose tax id is of another country than the seller's


# ISO 3166-1 alpha-2 (from tzdata's iso3166.tab): two letters that are no country are no tax country.
_COUNTRIES = frozenset(
    [
        "AD",
        "AE",
        "AF",
        "AG",
        "AI",
        "AL",
        "AM",
        "AO",
        "AQ",
        "AR",
        "AS",
        "AT",
        "AU",
        "AW",
        "AX",
        "AZ",
        "BA",
        "BB",
        "BD",
        "BE",
        "BF",
        "BG",
        "BH",
        "BI",
        "BJ",
        "BL",
        "BM",
        "BN",
        "BO",
        "BQ",
        "BR",
        "BS",
        "BT",
        "BV",
        "BW",
        "BY",
        "BZ",
        "CA",
        "CC",
        "CD",
        "CF",
        "CG",
        "CH",
        "CI",
        "CK",
        "CL",
        "CM",
        "CN",
        "CO",
        "CR",
        "CU",
        "CV",
        "CW",
        "CX",
        "CY",
        "CZ",
        "DE",
        "DJ",
        "DK",
        "DM",
        "DO",
        "DZ",
        "EC",
        "EE",
        "EG",
        "EH",
        "ER",
        "ES",
        "ET",
        "FI",
        "FJ",
        "FK",
        "FM",
        "FO",
        "FR",
        "GA",
        "GB",
        "GD",
        "GE",
        "GF",
        "GG",
        "GH",
        "GI",
        "GL",
        "GM",
        "GN",
        "GP",
        "GQ",
        "GR",
        "GS",
        "GT",
        "GU",
        "GW",
        "GY",
        "HK",
        "HM",
        "HN",
        "HR",
        "HT",
        "HU",
        "ID",
        "IE",
        "IL",
        "IM",
        "IN",
        "IO",
        "IQ",
        "IR",
        "IS",
        "IT",
        "JE",
        "JM",
        "JO",
        "JP",
        "KE",
        "KG",
        "KH",
        "KI",
        "KM",
        "KN",
        "KP",
        "KR",
        "KW",
        "KY",
        "KZ",
        "LA",
        "LB",
        "LC",
        "LI",
        "LK",
        "LR",
        "LS",
        "LT",
        "LU",
        "LV",
        "LY",
        "MA",
        "MC",
        "MD",
        "ME",
        "MF",
        "MG",
        "MH",
        "MK",
        "ML",
        "MM",
        "MN",
        "MO",
        "MP",
        "MQ",
        "MR",
        "MS",
        "MT",
        "MU",
        "MV",
        "MW",
        "MX",
        "MY",
        "MZ",
        "NA",
        "NC",
        "NE",
        "NF",
        "NG",
        "NI",
        "NL",
        "NO",
        "NP",
        "NR",
        "NU",
        "NZ",
        "OM",
        "PA",
        "PE",
        "PF",
        "PG",
        "PH",
        "PK",
        "PL",
        "PM",
        "PN",
        "PR",
        "PS",
        "PT",
        "PW",
        "PY",
        "QA",
        "RE",
        "RO",
        "RS",
        "RU",
        "RW",
        "SA",
        "SB",
        "SC",
        "SD",
        "SE",
        "SG",
        "SH",
        "SI",
        "SJ",
        "SK",
        "SL",
        "SM",
        "SN",
        "SO",
        "SR",
        "SS",
        "ST",
        "SV",
        "SX",
        "SY",
        "SZ",
        "TC",
        "TD",
        "TF",
        "TG",
        "TH",
        "TJ",
        "TK",
        "TL",
        "TM",
        "TN",
        "TO",
        "TR",
        "TT",
        "TV",
        "TW",
        "TZ",
        "UA",
        "UG",
        "UM",
        "US",
        "UY",
        "UZ",
        "VA",
        "VC",
        "VE",
        "VG",
        "VI",
        "VN",
        "VU",
        "WF",
        "WS",
        "YE",
        "YT",
        "ZA",
        "ZM",
        "ZW",
    ]
)
# VAT ids written with another prefix than the country's code: Greece (EL), Northern Ireland (XI, the UK).
_VAT_PREFIXES = {"EL": "GR", "XI": "GB"}


def tax_country(tax_id: str) -> str:
    """The country of a VAT-style tax id (``DE123456789`` -> ``DE``, ``EL…`` -> ``GR``), or "" when its
    first two characters name no country (``12-3456789``, ``ZZ1``)."""
    head = tax_id.strip().upper()[:2]
    head = _VAT_PREFIXES.get(head, head)
    return head if head in _COUNTRIES else ""


def reverse_charge_applies(rule: TaxRule, seller: Seller | None, buyer: Buyer | None) -> bool:
    if not rule.reverse_charge or rule.rate == 0 or seller is None or buyer is None:
        return False
    theirs, ours = tax_country(buyer.tax_id), tax_country(seller.tax_id)
    return bool(theirs and ours and theirs != ours)


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
class CarriedBalance:
    """An earlier invoice's total carried into this one: "Balance carried from <number>". Taxed on its own
    invoice already, so it is added to this one's total after tax and never taxed again."""

    number: str
    amount: Decimal


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
    # Snapshots taken at issue; invoices issued before these existed have none (and no tax).
    seller: Seller | None = None
    buyer: Buyer | None = None
    tax_rate: Decimal = Decimal(0)  # the rate in force, in percent (kept even when reverse charge exempts)
    tax_label: str = ""
    tax_inclusive: bool = False
    reverse_charge: bool = False
    tax: Decimal = Decimal(0)
    payment_instructions: str = ""
    # Earlier invoices' totals this one carries (stored with it); and, on a carried invoice, the invoice
    # that took its total once that is issued (a state, like paid_at: not part of the document).
    carried_in: tuple[CarriedBalance, ...] = ()
    carried_to: str | None = None

    @property
    def period_key(self) -> str:
        return f"{self.period_start:%Y-%m}"

    @property
    def carried_total(self) -> Decimal:
        return sum((c.amount for c in self.carried_in), Decimal(0))

    @property
    def subtotal(self) -> Decimal:
        """Net of tax: the lines' total (exclusive), or the lines' total less the tax in it (inclusive).
        Balances carried in are neither: total = subtotal + tax + carried_total."""
        return self.total - self.tax - self.carried_total

    @property
    def lines_total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), Decimal(0))

    @property
    def shows_tax(self) -> bool:
        """A 0 % rate shows no tax line; reverse charge shows its note instead of an amount."""
        return self.tax_rate != 0 and not self.reverse_charge

    @property
    def carry_note(self) -> str:
        """What a carried invoice says of its total: where it went, or that it goes to the next invoice."""
        if self.status is not InvoiceStatus.CARRIED:
            return ""
        if self.carried_to:
            return f"Carried to {self.carried_to}"
        return "Carried to your next invoice: below the minimum card payment, nothing to pay now"

    def state(self, today: date) -> str:
        """paid, unpaid, or overdue (unpaid past its due date): what the client sees."""
        if self.status is InvoiceStatus.UNPAID and today > self.due_on:
            return "overdue"
        return self.status.value


@dataclass(frozen=True)
class Pricing:
    """The token price and currency in force (operator-set, read from SSM)."""

    token_price: Decimal
    currency: str


@dataclass(frozen=True)
class InvoiceProfile:
    """Who sells, the tax rule in force and the payment instructions (operator-set, read from SSM)."""

    seller: Seller | None
    tax: TaxRule
    payment_instructions: str


NO_PROFILE = InvoiceProfile(seller=None, tax=TaxRule(), payment_instructions="")


# What a run records per account: each run counts each account once, under one of these.
OUTCOMES = ("invoiced", "already_invoiced", "nothing_to_bill", "failed", "would_invoice")


@dataclass(frozen=True)
class RunRecord:
    """An invoicing run as read back: its counts per outcome and its first failures."""

    run_id: str
    trigger: str
    period: dict[str, str]
    state: str
    counts: dict[str, int]
    started_at: datetime
    updated_at: datetime
    failures: dict[int, str]
    dry_run: bool = False

    @property
    def done(self) -> int:
        return sum(self.counts[o] for o in OUTCOMES)

    @property
    def finished(self) -> bool:
        return self.state == "queued" and self.done >= self.counts["queued"]


@dataclass
class ToIssue:
    """One account's invoice, or its nothing-to-bill record, waiting for its place in a transaction."""

    client_id: int
    period_key: str
    run_id: str
    email: str
    usage: str  # the raw SolusVM answer, JSON
    # builds the invoice for its number (and the balances it carries in, ``carried=``); None: nothing to bill
    invoice_for: Callable[..., Invoice] | None = None
    # the operator's re-bill: may replace the period's nothing-to-bill record (never an invoice)
    replace_nothing: bool = False
    currency: str = ""  # the invoice's: only carried balances in it are taken into it

    @property
    def key(self) -> str:
        """The (client, period) it bills, as invoices are keyed."""
        return f"{self.client_id}#{self.period_key}"


@dataclass(frozen=True, kw_only=True)
class CreditNote:
    """Cancels an issued invoice: its own gapless series, the invoice's amounts with the opposite sign."""

    number: str
    invoice_number: str
    client_id: int
    email: str
    period_start: date
    period_end: date
    currency: str
    # The voided invoice's amounts with the opposite sign, and its seller and buyer as it printed them.
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    issued_on: date
    reason: str
    seller: Seller | None = None
    buyer: Buyer | None = None

    @property
    def period_key(self) -> str:
        return f"{self.period_start:%Y-%m}"
