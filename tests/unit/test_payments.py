"""Amounts in minor units, the minimum charge, idempotency keys and the Stripe settings."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postpay import money
from postpay.config import ConfigError, Settings
from postpay.payments import chargeable, idempotency_key, minor_units
from tests.unit.test_config import BASE

STRIPE = {
    "STRIPE_SECRET_KEY_SECRET": "postpay/stripe-secret-key",
    "STRIPE_WEBHOOK_SECRET_SECRET": "postpay/stripe-webhook-secret",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
}


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("0.50", "eur", 50),
        ("1200", "JPY", 1200),
        ("1.234", "KWD", 1234),
        ("8.1", "USD", 810),
        ("0", "USD", 0),
    ],
)
def test_an_amount_becomes_the_currencys_minor_units(amount, currency, minor):
    assert minor_units(Decimal(amount), currency) == minor


def test_an_amount_finer_than_the_currency_is_refused_not_rounded():
    with pytest.raises(ValueError, match="more decimals"):
        minor_units(Decimal("12.345"), "USD")
    with pytest.raises(ValueError, match="more decimals"):
        minor_units(Decimal("5.5"), "JPY")


@given(cents=st.integers(min_value=0, max_value=10**15), currency=st.sampled_from(["USD", "JPY", "KWD"]))
def test_minor_units_round_trip_every_invoice_total(cents, currency):
    amount = Decimal(cents).scaleb(-money.minor_unit(currency)).quantize(money.quantum(currency))
    assert minor_units(amount, currency) == cents


def test_below_the_gateway_minimum_is_not_chargeable():
    assert not chargeable(Decimal("0.49"), "USD")
    assert chargeable(Decimal("0.50"), "USD")
    assert not chargeable(Decimal("49"), "JPY") and chargeable(Decimal("50"), "JPY")
    assert not chargeable(Decimal("0.01"), "XYZ")  # unknown currency: the USD figure


def test_idempotency_key_is_one_per_invoice_and_attempt():
    assert idempotency_key("INV-000123", 1) == idempotency_key("INV-000123", 1)
    assert idempotency_key("INV-000123", 1) != idempotency_key("INV-000123", 2)
    assert idempotency_key("INV-000123", 1) != idempotency_key("INV-000124", 1)
    with pytest.raises(ValueError):
        idempotency_key("INV-000123", 0)


def test_without_stripe_settings_cards_are_off_and_dunning_has_its_defaults():
    settings = Settings.from_env(BASE)
    assert not settings.stripe_enabled and settings.stripe_publishable_key is None
    assert settings.dunning_days == (3, 7)


def test_stripe_configured_with_all_three_settings():
    settings = Settings.from_env({**BASE, **STRIPE, "DUNNING_DAYS": "2,5,9"})
    assert settings.stripe_enabled and settings.stripe_publishable_key == "pk_live_abc"
    assert settings.dunning_days == (2, 5, 9)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"STRIPE_PUBLISHABLE_KEY": ""}, "Stripe is half configured: set STRIPE_PUBLISHABLE_KEY"),
        ({"STRIPE_PUBLISHABLE_KEY": "sk_live_oops"}, "STRIPE_PUBLISHABLE_KEY must be a publishable key"),
        ({"DUNNING_DAYS": "7,3"}, "DUNNING_DAYS must be increasing whole days"),
        ({"DUNNING_DAYS": "0"}, "DUNNING_DAYS must be increasing whole days"),
        ({"STRIPE_API_BASE": "localstripe"}, "STRIPE_API_BASE must be an http(s) URL"),
    ],
)
def test_bad_stripe_settings_fail_the_start_naming_them(changes, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        Settings.from_env({**BASE, **STRIPE, **changes})
