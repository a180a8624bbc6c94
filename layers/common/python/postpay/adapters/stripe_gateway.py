"""Stripe, through the official SDK: the one module that talks to the card gateway.

The client is built lazily (the secret key comes from Secrets Manager on first use) and can point at
localstripe (``api_base``) for ``make run`` and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe

from postpay.limits import STRIPE_NETWORK_RETRIES, STRIPE_TIMEOUT_SECONDS
from postpay.payments import (
    BadEvent,
    Card,
    CardNotSaved,
    ChargeResult,
    GatewayError,
    GatewayRefused,
    PaymentEvent,
    idempotency_key,
)


class StripeGateway:
    def __init__(
        self,
        secret_key: Callable[[], str],
        *,
        webhook_secret: Callable[[], str],
        api_base: str | None = None,
        timeout: float = STRIPE_TIMEOUT_SECONDS,
    ) -> None:
        self._secret_key = secret_key
        self._webhook_secret = webhook_secret
        self._api_base = api_base
        self._timeout = timeout
        self._client: stripe.StripeClient | None = None

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            self._client = stripe.StripeClient(
                self._secret_key(),
                base_addresses={"api": self._api_base} if self._api_base else {},
                # retries are safe: every creating request carries an idempotency key
                max_network_retries=STRIPE_NETWORK_RETRIES,
                http_client=stripe.RequestsClient(timeout=self._timeout),
            )
        return self._client

    def create_customer(self, *, client_id: int, email: str) -> str:
        try:
            customer = self.client.customers.create(
                params={"email": email, "metadata": {"client_id": str(client_id)}},
                options={"idempotency_key": f"postpay-customer-{client_id}"},
            )
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return str(customer.id)

    def setup_intent(self, *, customer: str) -> str:
        try:
            intent = self.client.setup_intents.create(
                params={"customer": customer, "payment_method_types": ["card"], "usage": "off_session"}
            )
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return str(intent.client_secret)

    def card(self, payment_method: str) -> Card:
        try:
            method = self.client.payment_methods.retrieve(payment_method)
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        card = method.card
        if card is None:
            raise GatewayError(f"payment method {payment_method} is not a card")
        return Card(
            payment_method=str(method.id),
            brand=str(card.brand),
            last4=str(card.last4),
            exp_month=int(card.exp_month),
            exp_year=int(card.exp_year),
        )

    def saved_card(self, *, setup_intent: str, customer: str) -> Card:
        try:
            intent = self.client.setup_intents.retrieve(setup_intent)
        except stripe.InvalidRequestError as error:
            raise CardNotSaved("no such card setup") from error
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        if intent.customer != customer or intent.status != "succeeded" or not intent.payment_method:
            raise CardNotSaved(f"the card setup is {intent.status}")
        method_id = str(intent.payment_method)
        try:
            method = self.client.payment_methods.retrieve(method_id)
            if method.customer is None:  # Stripe attaches it when the setup succeeds; localstripe does not
                self.client.payment_methods.attach(method_id, params={"customer": customer})
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return self.card(method_id)

    def detach(self, payment_method: str) -> None:
        try:
            self.client.payment_methods.detach(payment_method)
        except stripe.InvalidRequestError:
            return  # already detached or unknown: the card is off the customer either way
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error

    def charge(
        self,
        *,
        customer: str,
        payment_method: str,
        amount_minor: int,
        currency: str,
        invoice_number: str,
        attempt: int,
        off_session: bool = True,
    ) -> ChargeResult:
        try:
            intent = self.client.payment_intents.create(
                params={
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "customer": customer,
                    "payment_method": payment_method,
                    "payment_method_types": ["card"],  # no redirect-based method: no return_url needed
                    "off_session": off_session,
                    "confirm": True,
                    "metadata": {"invoice": invoice_number, "attempt": str(attempt)},
                },
                options={"idempotency_key": idempotency_key(invoice_number, attempt)},
            )
        except stripe.CardError as error:
            # Real Stripe returns the failed PaymentIntent with the error; localstripe does not.
            failed = getattr(error.error, "payment_intent", None) if error.error else None
            return ChargeResult(
                intent_id=str(failed["id"]) if failed else None, status="failed", reason=_reason(error)
            )
        except (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError) as error:
            raise GatewayRefused(_reason(error)) from error  # answered and refused: nothing was created
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return _result(intent)

    def get_charge(self, intent_id: str) -> ChargeResult:
        try:
            intent = self.client.payment_intents.retrieve(intent_id)
        except stripe.InvalidRequestError as error:
            raise GatewayRefused("no such payment") from error
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        last_error = intent.last_payment_error
        return ChargeResult(
            intent_id=str(intent.id),
            status=str(intent.status),  # Stripe's own: requires_payment_method, requires_action, ...
            reason=str(last_error.message) if last_error is not None else None,
            client_secret=str(intent.client_secret),
            invoice_number=(intent.metadata or {}).get("invoice"),
            amount_minor=int(intent.amount),
        )

    def cancel_charge(self, intent_id: str) -> ChargeResult:
        """Cancels a PaymentIntent still waiting (for 3-D Secure, a confirmation or a card); one Stripe will
        not cancel (succeeded, processing, cancelled already) is returned as it stands."""
        try:
            self.client.payment_intents.cancel(intent_id)
        except stripe.InvalidRequestError:
            pass  # not cancellable in its state: what that state is comes next
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return self.get_charge(intent_id)

    def refund(self, *, intent_id: str, amount_minor: int, reason: str, key: str) -> int:
        try:
            refund = self.client.refunds.create(
                params={
                    "payment_intent": intent_id,
                    "amount": amount_minor,
                    "metadata": {"reason": reason[:500], "postpay_refund": key},
                },
                options={"idempotency_key": key},
            )
        except (stripe.InvalidRequestError, stripe.CardError) as error:
            raise GatewayRefused(_reason(error)) from error
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return int(refund.amount)

    def find_refund(self, *, intent_id: str, key: str) -> int | None:
        try:
            page = self.client.refunds.list(params={"payment_intent": intent_id, "limit": 100})
            for refund in page.auto_paging_iter():
                if (refund.metadata or {}).get("postpay_refund") == key:
                    return int(refund.amount)
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error
        return None

    def find_charge(self, *, customer: str, invoice_number: str, attempt: int) -> ChargeResult | None:
        for intent in self._intents_of(customer):
            metadata = intent.metadata or {}
            if metadata.get("invoice") == invoice_number and metadata.get("attempt") == str(attempt):
                return _result(intent)
        return None

    def _intents_of(self, customer: str) -> list[Any]:
        try:
            page = self.client.payment_intents.list(params={"customer": customer, "limit": 100})
            return list(page.auto_paging_iter())
        except stripe.InvalidRequestError:
            # localstripe cannot filter PaymentIntents by customer: filter the full list here
            page = self.client.payment_intents.list(params={"limit": 100})
            return [i for i in page.auto_paging_iter() if i.customer == customer]
        except stripe.StripeError as error:
            raise GatewayError(_reason(error)) from error

    def parse_event(self, payload: str, signature: str | None) -> PaymentEvent:
        if not signature:
            raise BadEvent("no Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._webhook_secret(), tolerance=WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as error:
            raise BadEvent("the signature does not match, or the event is too old") from error
        except ValueError as error:
            raise BadEvent("the body is not a Stripe event") from error
        try:
            return _event(event)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise BadEvent("the event does not have the fields of its type") from error


# Stripe's own default: an event signed more than 5 minutes ago is refused (a replayed capture)
WEBHOOK_TOLERANCE_SECONDS = 300


def _event(event: Any) -> PaymentEvent:
    kind = str(event["type"])
    data = event["data"]["object"]
    event_id = str(event["id"])
    if kind.startswith("payment_intent."):
        error = data.get("last_payment_error") or {}
        return PaymentEvent(
            id=event_id,
            type=kind,
            intent_id=str(data["id"]),
            invoice_number=(data.get("metadata") or {}).get("invoice"),
            reason=str(error.get("message") or error.get("code") or "") or None,
        )
    if kind == "charge.refunded":
        return PaymentEvent(
            id=event_id,
            type=kind,
            intent_id=str(data.get("payment_intent") or "") or None,
            invoice_number=(data.get("metadata") or {}).get("invoice"),
            refunded_minor=int(data["amount_refunded"]),
        )
    return PaymentEvent(id=event_id, type=kind)


def _result(intent: Any) -> ChargeResult:
    status = str(intent.status)
    if status == "requires_payment_method":
        error = intent.last_payment_error
        return ChargeResult(
            intent_id=str(intent.id),
            status="failed",
            reason=str(error.message) if error is not None else "the card was declined",
        )
    if status == "requires_action":
        return ChargeResult(
            intent_id=str(intent.id), status="requires_action", client_secret=str(intent.client_secret)
        )
    if status == "succeeded":
        return ChargeResult(intent_id=str(intent.id), status="succeeded")
    return ChargeResult(intent_id=str(intent.id), status="processing")


def _reason(error: stripe.StripeError) -> str:
    """A reason safe to store and show: Stripe's user message or code, never the request or key."""
    return str(getattr(error, "user_message", None) or getattr(error, "code", None) or type(error).__name__)
