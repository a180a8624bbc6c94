"""Factories for collection tests: a card on file at localstripe, and the PaymentIntents it holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe

from local.stack import STRIPE_SECRET_KEY, LocalStack
from postpay.adapters.tables import AccountItem

# June 2026: a month no other test bills, with accounts enrolled after every month other tests bill, so
# their runs do not queue (and charge) these accounts
JUNE_2026 = datetime(2026, 6, 1, tzinfo=UTC)
VISA = "4242424242424242"
DECLINED_AFTER_ATTACH = "4000000000000341"  # saves fine, every charge is declined


def stripe_client(stack: LocalStack) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_SECRET_KEY, base_addresses={"api": stack.stripe.url})


def card_on_file(stack: LocalStack, container: Any, account: AccountItem, number: str = VISA) -> str:
    """Saves a card as the Add-a-card page does (SetupIntent confirmed by Stripe.js), by the API directly:
    localstripe, unlike Stripe, takes raw test card numbers there."""
    customer = container.payments.save_customer(
        account.client_id,
        container.gateway.create_customer(client_id=account.client_id, email=account.email),
        container.clock.now(),
    )
    client = stripe_client(stack)
    method = client.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.payment_methods.attach(method.id, params={"customer": customer})
    container.payments.save_card(account.client_id, container.gateway.card(method.id), container.clock.now())
    return customer


def intents_of(stack: LocalStack, customer: str) -> list[Any]:
    page = stripe_client(stack).payment_intents.list(params={"limit": 100})
    return [i for i in page.auto_paging_iter() if i.customer == customer]
