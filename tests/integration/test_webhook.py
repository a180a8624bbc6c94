"""POST /payments/stripe: signed events processed once; forged, stale and garbled ones answered 400."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import date

import pytest

from local.events import LambdaContext, rest_event
from local.stack import STRIPE_WEBHOOK_SECRET
from postpay.adapters.tables import AccountItem
from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke
from tests.integration.payment_helpers import DECLINED_AFTER_ATTACH, JUNE_2026, card_on_file
from tests.integration.test_upkeep import daily, make_overdue, solus_status

SEPTEMBER = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]


def signed(payload: str, *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None) -> str:
    """A Stripe-Signature header as Stripe computes it: HMAC-SHA256 of "<timestamp>.<payload>"."""
    stamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def event(kind: str, obj: dict) -> str:
    """An event shaped as Stripe's API sends it (api_version 2024-06-20, trimmed to what we read)."""
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "data": {"object": obj},
        }
    )


def post(functions, payload: str, signature: str | None) -> dict:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    request = rest_event("POST", "/payments/stripe", headers=headers, body=payload.encode())
    return functions["payments"].handler(request, LambdaContext(function_name="payments"))


def failing_invoice(stack, functions, worker):
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    card_on_file(stack, container, account, DECLINED_AFTER_ATTACH)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    return account, item


def test_payment_intent_succeeded_marks_the_invoice_paid_once(stack, functions, worker):
    # Given an unpaid invoice whose automatic charge failed
    account, item = failing_invoice(stack, functions, worker)
    # When Stripe reports a PaymentIntent of it succeeded (the client paid with another card), twice
    payload = event(
        "payment_intent.succeeded",
        {
            "id": "pi_paid_by_hand",
            "object": "payment_intent",
            "status": "succeeded",
            "metadata": {"invoice": item.number, "attempt": "1"},
        },
    )
    first = post(functions, payload, signed(payload))
    again = post(functions, payload, signed(payload))
    # Then the invoice is paid with that PaymentIntent, and the replay changed nothing
    assert first["statusCode"] == 200 and json.loads(first["body"])["message"] == "paid"
    assert again["statusCode"] == 200 and json.loads(again["body"])["message"] == "duplicate"
    invoice = functions["automation"].container.billing.invoice_by_number(item.number)
    assert invoice.status.value == "paid" and invoice.payment_reference == "card pi_paid_by_hand"
    assert len([m for m in stack.mails_to(account.email) if m.subject.startswith("Receipt")]) == 1


def test_payment_failed_for_a_known_failure_sends_no_second_email(stack, functions, worker):
    account, item = failing_invoice(stack, functions, worker)
    record = functions["automation"].container.payments.charge_of(item.number)
    payload = event(
        "payment_intent.payment_failed",
        {
            "id": record.intent_id or "pi_x",
            "object": "payment_intent",
            "status": "requires_payment_method",
            "metadata": {"invoice": item.number, "attempt": "1"},
            "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
        },
    )
    answer = post(functions, payload, signed(payload))
    assert answer["statusCode"] == 200
    mails = [m for m in stack.mails_to(account.email) if "could not charge" in m.subject]
    assert len(mails) == 1  # localstripe's decline carries no PaymentIntent: "pi_x" is not the recorded one


def test_charge_refunded_is_recorded(stack, functions, worker):
    _account, item = failing_invoice(stack, functions, worker)
    payload = event(
        "charge.refunded",
        {
            "id": "ch_1",
            "object": "charge",
            "payment_intent": "pi_1",
            "amount_refunded": 250,
            "metadata": {"invoice": item.number},
        },
    )
    assert post(functions, payload, signed(payload))["statusCode"] == 200
    assert functions["automation"].container.payments.charge_of(item.number).refunded_minor == 250


def test_unknown_events_are_acknowledged_and_ignored(functions):
    payload = event("customer.created", {"id": "cus_1", "object": "customer"})
    answer = post(functions, payload, signed(payload))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["message"] == "ignored"


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "no signature"),
        ("garbage", "a malformed header"),
        ("forged", "signed with another secret"),
        ("stale", "signed 10 minutes ago (a replayed capture)"),
        ("tampered", "the body changed after signing"),
    ],
)
def test_forged_or_stale_events_are_refused_with_400_and_change_nothing(
    stack, functions, worker, signature, why
):
    _account, item = failing_invoice(stack, functions, worker)
    payload = event(
        "payment_intent.succeeded",
        {"id": "pi_forged", "object": "payment_intent", "metadata": {"invoice": item.number}},
    )
    header = {
        None: None,
        "garbage": "garbage",
        "forged": signed(payload, secret="whsec_attacker"),
        "stale": signed(payload, at=int(time.time()) - 600),
        "tampered": signed(payload),
    }[signature]
    body = payload.replace("pi_forged", "pi_forgeX") if signature == "tampered" else payload
    answer = post(functions, body, header)
    assert answer["statusCode"] == 400, why
    invoice = functions["automation"].container.billing.invoice_by_number(item.number)
    assert invoice.status.value == "unpaid"


def test_a_body_that_is_not_json_is_400_not_500(functions):
    payload = "not json {"
    assert post(functions, payload, signed(payload))["statusCode"] == 400


def test_another_method_on_the_webhook_is_405_with_allow(functions):
    request = rest_event("GET", "/payments/stripe")
    answer = functions["payments"].handler(request, LambdaContext(function_name="payments"))
    assert answer["statusCode"] == 405
    assert answer["multiValueHeaders"].get("Allow", answer.get("headers", {}).get("Allow")) in (
        ["POST"],
        "POST",
    )


def test_a_suspended_client_paid_by_card_is_reactivated(stack, functions, worker):
    # Given a client suspended for an invoice whose automatic charge failed
    account, item = failing_invoice(stack, functions, worker)
    make_overdue(item.number, days=15)
    assert item.number in daily(functions, date.today())["upkeep"]["suspended"]
    assert solus_status(stack, account.solus_user_id) == "suspended"
    # When Stripe reports that invoice paid
    payload = event(
        "payment_intent.succeeded",
        {
            "id": "pi_paid_late",
            "object": "payment_intent",
            "status": "succeeded",
            "metadata": {"invoice": item.number, "attempt": "1"},
        },
    )
    assert post(functions, payload, signed(payload))["statusCode"] == 200
    # Then the SolusVM user is active again and the suspension is cleared
    assert solus_status(stack, account.solus_user_id) == "active"
    assert AccountItem.get(account.email).suspended_for is None
