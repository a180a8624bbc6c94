"""Money: Decimal amounts from integer tokens; one rounding rule, in one place (``round_money``).

Rule: every amount is rounded half-up to the currency's minor unit (ISO 4217), by ``round_money`` only.
- a line: tokens * token price, rounded;
- the lines' total: the sum of the rounded lines (so the lines always add up to the total shown);
- tax, on the lines' total, rounded once:
  exclusive (added on top): tax = round(lines * rate), total = lines + tax, subtotal = lines;
  inclusive (already in the lines): tax = round(lines * rate / (1 + rate)), total = lines,
  subtotal = lines - tax. So subtotal + tax = total, always, to the minor unit.
A zero rate (or reverse charge) gives tax 0 and total = subtotal = the lines' total.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor units that are not 2.
_MINOR_UNITS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def minor_unit(currency: str) -> int:
    return _MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


def round_money(value: Decimal, currency: str) -> Decimal:
    """The one rounding rule: half-up to the currency's minor unit."""
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def line_amount(tokens: int, token_price: Decimal, currency: str) -> Decimal:
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative integer, got {tokens!r}")
    return round_money(Decimal(tokens) * token_price, currency)


def total(amounts: list[Decimal], currency: str) -> Decimal:
    return round_money(sum(amounts, Decimal(0)), currency)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal  # net of tax
    tax: Decimal
    total: Decimal  # what the client pays


def with_tax(lines_total: Decimal, rate_percent: Decimal, currency: str, *, inclusive: bool) -> Totals:
    """Tax on the lines' total at ``rate_percent`` (20 for 20 %), by the rule in this module's docstring."""
    if not rate_percent.is_finite() or rate_percent < 0:
        raise ValueError(f"tax rate must be a non-negative percentage, got {rate_percent!r}")
    lines = round_money(lines_total, currency)
    rate = rate_percent / 100
    if inclusive:
        tax = round_money(lines * rate / (1 + rate), currency)
        return Totals(subtotal=lines - tax, tax=tax, total=lines)
    tax = round_money(lines * rate, currency)
    return Totals(subtotal=lines, tax=tax, total=lines + tax)


_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def format_amount(amount: Decimal, currency: str) -> str:
    """``1,234.56 USD``; JPY as ``¥1,235``: thousands separators, the currency's minor unit, no rounding
    beyond it (amounts are rounded already; a unit price keeps its own precision)."""
    places = max(minor_unit(currency), -int(amount.normalize().as_tuple().exponent))
    text = f"{amount:,.{places}f}"
    if currency.upper() == "JPY" and places == 0:
        return f"¥{text}"
    return f"{text} {currency.upper()}"


def format_count(value: int) -> str:
    """``29,988``."""
    return f"{value:,}"
