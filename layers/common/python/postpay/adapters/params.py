"""Secrets Manager and SSM Parameter Store, through Powertools Parameters (cached)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from aws_lambda_powertools.utilities import parameters

_CACHE_SECONDS = 300
UNSET_SECRET = "SET-ME"  # noqa: S105 - a marker: what the stack creates the secret with (infra/components/settings.py)


class ParameterError(RuntimeError):
    """An operator-set value is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Pricing:
    token_price: Decimal
    currency: str


def secret(name: str) -> str:
    value = parameters.get_secret(name, max_age=_CACHE_SECONDS)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    value = str(value).strip()
    if not value or value == UNSET_SECRET:
        raise ParameterError(f"secret {name} is not set: put the SolusVM API token in it")
    return value


def pricing(price_parameter: str, currency_parameter: str) -> Pricing:
    raw_price = str(parameters.get_parameter(price_parameter, max_age=_CACHE_SECONDS)).strip()
    currency = str(parameters.get_parameter(currency_parameter, max_age=_CACHE_SECONDS)).strip().upper()
    try:
        price = Decimal(raw_price)
    except InvalidOperation as error:
        raise ParameterError(
            f"parameter {price_parameter} must be a decimal number, got {raw_price!r}"
        ) from error
    if not price.is_finite() or price <= 0:
        raise ParameterError(f"parameter {price_parameter} must be a positive number, got {raw_price!r}")
    if len(currency) != 3 or not currency.isalpha():
        raise ParameterError(f"parameter {currency_parameter} must be an ISO 4217 code, got {currency!r}")
    return Pricing(token_price=price, currency=currency)
