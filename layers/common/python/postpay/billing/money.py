"""Money: Decimal amounts from integer tokens; one rounding rule, in one place.

Rule: amount = tokens * token price, rounded half-up to the currency's minor unit, per line.
Total = the sum of the rounded lines (so the lines always add up to the total shown).
"""

from __future__ import annotations

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


def line_amount(tokens: int, token_price: Decimal, currency: str) -> Decimal:
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative integer, got {tokens!r}")
    return (Decimal(tokens) * token_price).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def total(amounts: list[Decimal], currency: str) -> Decimal:
    return sum(amounts, Decimal(0)).quantize(quantum(currency))
