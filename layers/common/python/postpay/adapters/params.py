"""Secrets Manager and SSM Parameter Store, through Powertools Parameters (cached).

Operator-tunable values live in SSM so they change without a deploy: the token price and currency, and
the invoice profile (who sells, the tax in force, payment instructions) under one path, read in one call:

    <path>seller/name       required for a seller to be shown   <path>tax/rate       percent, "20"
    <path>seller/address    lines, one per line                 <path>tax/label      "VAT"
    <path>seller/tax-id     "GB123456789"                       <path>tax/mode       exclusive | inclusive
    <path>seller/email      contact address                     <path>tax/reverse-charge   on | off
    <path>seller/website    https URL                           <path>payment-instructions text
    <path>seller/logo       data:image/png;base64,... (optional)
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from postpay.models import NO_PROFILE, InvoiceProfile, Pricing, Seller, TaxRule

_CACHE_SECONDS = 300
UNSET_SECRET = "SET-ME"  # noqa: S105 - a marker: what the stack creates the secret with (infra/components/settings.py)


class ParameterError(RuntimeError):
    """An operator-set value is missing or malformed; the message names it."""


def secret(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters  # on first use: Parameters is costly to import

    value = parameters.get_secret(name, max_age=_CACHE_SECONDS)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    value = str(value).strip()
    if not value or value == UNSET_SECRET:
        raise ParameterError(f"secret {name} is not set: put its value (see README, Configuration) in it")
    return value


def pricing(price_parameter: str, currency_parameter: str) -> Pricing:
    from aws_lambda_powertools.utilities import parameters

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


_LOGO_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,")


def invoice_profile(path: str) -> InvoiceProfile:
    """The seller, tax rule and payment instructions under ``path`` (empty path: none configured)."""
    if not path:
        return NO_PROFILE
    from aws_lambda_powertools.utilities import parameters

    values = parameters.get_parameters(path, max_age=_CACHE_SECONDS, recursive=True)
    return profile_from(path, {str(k).strip("/"): str(v).strip() for k, v in values.items()})


def profile_from(path: str, values: dict[str, str]) -> InvoiceProfile:
    """Validates the parameters (names relative to ``path``); a bad one raises naming it."""
    errors: list[str] = []
    rate_text = values.get("tax/rate", "0")
    try:
        rate = Decimal(rate_text)
    except InvalidOperation:
        rate = Decimal(-1)
    if not rate.is_finite() or not 0 <= rate < 100:
        errors.append(f"{path}tax/rate must be a percentage from 0 to 100, got {rate_text!r}")
        rate = Decimal(0)
    mode = values.get("tax/mode", "exclusive").lower()
    if mode not in ("exclusive", "inclusive"):
        errors.append(f"{path}tax/mode must be exclusive or inclusive, got {mode!r}")
    reverse = values.get("tax/reverse-charge", "off").lower()
    if reverse not in ("on", "off", "true", "false"):
        errors.append(f"{path}tax/reverse-charge must be on or off, got {reverse!r}")
    logo = values.get("seller/logo", "")
    if logo and not logo.startswith(_LOGO_PREFIXES):
        errors.append(f"{path}seller/logo must be a data:image/png or data:image/jpeg base64 URI")
    website = values.get("seller/website", "")
    if website and not website.startswith(("https://", "http://")):
        errors.append(f"{path}seller/website must be an http(s) URL, got {website!r}")
    email = values.get("seller/email", "")
    if email and "@" not in email:
        errors.append(f"{path}seller/email must be an email address, got {email!r}")
    if errors:
        raise ParameterError("; ".join(errors))
    name = values.get("seller/name", "")
    seller = (
        Seller(
            name=name,
            address=tuple(
                line.strip() for line in values.get("seller/address", "").splitlines() if line.strip()
            ),
            tax_id=values.get("seller/tax-id", "").upper(),
            email=email,
            website=website,
            logo=logo,
        )
        if name
        else None
    )
    tax = TaxRule(
        rate=rate,
        label=values.get("tax/label", "VAT") or "VAT",
        inclusive=mode == "inclusive",
        reverse_charge=reverse in ("on", "true"),
    )
    return InvoiceProfile(seller=seller, tax=tax, payment_instructions=values.get("payment-instructions", ""))
