"""Card payments and void invoices: no charge starts on a void invoice, a void cancels the PaymentIntent
waiting for 3-D Secure, and a payment that still succeeds on a void invoice (a race) is refunded in full,
once."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
import requests

from postpay.adapters.tables import InvoiceItem
from postpay.billing.collection import CHARGE_LEASE
from postpay.billing.commands import PayloadError
from postpay.payments import GatewayError
from tests.integration.billing_helpers import drain, invoke
from tests.integration.payment_helpers import VISA, card_on_file, intents_of, stripe_client
from tests.integration.test_dunning import daily
from tests.integration.test_pay_now import THREE_D_SECURE, client_with_failed_invoice
from tests.integration.test_webhook import event, post, signed


def void(functions, number: str) -> dict:
    return invoke(functions, {"voidInvoice": number, "reason": "billed the wrong plan"})


def status_of(functions, number: str) -> str:
    return functions["automation"].container.billing.invoice_by_number(number).status.value


def refunds_of(stack, intent: str) -> list:
    page = stripe_client(stack).refunds.list(params={"payment_intent": intent, "limit": 100})
    return list(page.auto_paging_iter())


def refund_mails(stack, account) -> list:
    return [m for m in stack.mails_to(account.email) if m.subject.startswith("Refund")]


def authenticate(stack, intent: str, secret: str) -> requests.Response:
    """What Stripe.js does when the client passes the bank's 3-D Secure step."""
    return requests.post(
        f"{stack.stripe.url}/v1/payment_intents/{intent}/_authenticate?success=true",
        data=json.dumps({"key": "pk_test_local", "client_secret": secret}),
        timeout=5,
    )


def waiting_for_3d_secure(stack, functions, browser, account, item):
    """The client pressed Pay now with a card whose bank asks for 3-D Secure: the bank's page is open."""
    card_on_file(stack, functions["sso"].container, account, THREE_D_SECURE)
    pay = browser.get(f"/invoices/{item.number}/pay")
    step = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    assert step.status == 200 and step.has("Your bank asks you to confirm")
    return step, step.field("payment_intent"), re.search(r'data-secret="([^"]+)"', step.body).group(1)


def test_a_void_cancels_the_pay_now_waiting_for_3d_secure_so_nothing_is_captured(
    stack, functions, worker, browser
):
    # Given a client on the bank's 3-D Secure page for their unpaid invoice
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    step, intent, secret = waiting_for_3d_secure(stack, functions, browser, account, item)
    # When the operator voids the invoice
    result = void(functions, item.number)
    # Then the waiting PaymentIntent is cancelled at Stripe, so the bank's step can no longer capture it
    assert result["status"] == "void"
    assert stripe_client(stack).payment_intents.retrieve(intent).status == "canceled"
    assert authenticate(stack, intent, secret).status_code == 400
    # and the client's return from the bank's page pays nothing: the invoice stays void, nothing captured
    back = browser.post(f"/invoices/{item.number}/authenticated", {"payment_intent": intent}, csrf_from=step)
    assert back.status == 303 and back.location == f"/invoices/{item.number}"
    assert status_of(functions, item.number) == "void"
    assert not [i for i in intents_of(stack, customer) if i.status == "succeeded"]
    assert refund_mails(stack, account) == []
    record = functions["automation"].container.payments.charge_of(item.number)
    assert (record.outcome, record.reason) == ("failed", "cancelled: the invoice was voided")


def test_a_payment_that_succeeds_on_a_void_invoice_is_refunded_once_under_replays(
    stack, functions, worker, browser, monkeypatch
):
    # Given the race a void cannot prevent: the operator's void has checked that no card payment is under
    # way, and before its write lands the client presses Pay now (their bank asks for 3-D Secure)
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    card_on_file(stack, functions["sso"].container, account, THREE_D_SECURE)
    pay = browser.get(f"/invoices/{item.number}/pay")
    collection = functions["automation"].container.collection
    checked = collection.before_void
    opened = {}

    def then_the_client_pays(invoice):
        checked(invoice)
        opened["step"] = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)

    monkeypatch.setattr(collection, "before_void", then_the_client_pays)
    assert void(functions, item.number)["status"] == "void"
    step = opened["step"]
    intent = step.field("payment_intent")
    secret = re.search(r'data-secret="([^"]+)"', step.body).group(1)
    # When the client passes the bank's step: the payment succeeds at Stripe on the void invoice
    authenticate(stack, intent, secret).raise_for_status()
    # and Stripe reports it (delivered twice, and once more as another event), and the client's page returns
    succeeded = {
        "id": intent,
        "object": "payment_intent",
        "status": "succeeded",
        "metadata": {"invoice": item.number, "attempt": "2"},
    }
    payload = event("payment_intent.succeeded", succeeded)
    answers = [post(functions, payload, signed(payload)) for _ in range(2)]
    another = event("payment_intent.succeeded", succeeded)
    answers.append(post(functions, another, signed(another)))
    back = browser.post(f"/invoices/{item.number}/authenticated", {"payment_intent": intent}, csrf_from=step)
    # Then the invoice stays void, and the payment is refunded in full exactly once
    assert [json.loads(a["body"])["message"] for a in answers] == ["refunded", "duplicate", "refunded"]
    assert status_of(functions, item.number) == "void"
    [refund] = refunds_of(stack, intent)
    assert refund.amount == 500
    recorded = functions["automation"].container.payments.void_payment(intent)
    assert (recorded.invoice_number, recorded.amount_minor, recorded.refunded_minor) == (
        item.number,
        500,
        500,
    )
    # and the client is told once, on the page and by email
    assert back.status == 303 and back.location == f"/invoices/{item.number}?notice=refunded"
    assert browser.get(back.location).has("so we refunded it in full")
    [mail] = refund_mails(stack, account)
    assert item.number in mail.subject and "5.00 USD" in mail.html and "refunded" in mail.html
    # and the invoice's history says what happened, for the operator
    history = functions["automation"].container.billing.invoice_history(item.number)
    assert [h["event"] for h in history] == [
        "card payment on the void invoice",
        "card payment refunded: the invoice is void",
    ]
    assert all(h["paymentIntent"] == intent and h["amount"] == "5.00 USD" for h in history)
    assert customer  # the customer's one succeeded PaymentIntent is the refunded one
    assert [i.id for i in intents_of(stack, customer) if i.status == "succeeded"] == [intent]


def test_a_payment_on_a_rebilled_void_invoice_is_recorded_on_the_void_one(stack, functions, worker, browser):
    # Given a void invoice, a payment of it made at Stripe that was never recorded here (a charge whose
    # answer was lost), and the month billed again
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    void(functions, item.number)
    card_on_file(stack, functions["automation"].container, account, VISA)
    gateway = functions["automation"].container.gateway
    on_file = functions["automation"].container.payments.card_on_file(account.client_id)
    late = gateway.charge(
        customer=customer,
        payment_method=on_file.card.payment_method,
        amount_minor=500,
        currency="USD",
        invoice_number=item.number,
        attempt=9,
    )
    invoke(functions, {"rebill": {"client": account.client_id, "period": item.period_key}})
    drain(worker)
    # When Stripe reports it
    payload = event(
        "payment_intent.succeeded",
        {"id": late.intent_id, "object": "payment_intent", "metadata": {"invoice": item.number}},
    )
    assert json.loads(post(functions, payload, signed(payload))["body"])["message"] == "refunded"
    # Then it is refunded and written on the void invoice's history, the new invoice untouched
    assert len(refunds_of(stack, late.intent_id)) == 1
    kept = InvoiceItem.get(f"{item.account_period}#{item.number}")
    assert kept.status == "void" and len(kept.history or []) == 2
    current = InvoiceItem.get(item.account_period)
    assert current.number != item.number and not current.history


def test_when_the_automatic_refund_fails_the_operators_refund_finishes_it_once(
    stack, functions, worker, browser, monkeypatch
):
    # Given a payment made at Stripe on an invoice voided since (never recorded here), and Stripe failing
    # the automatic refund when its webhook arrives (the webhook fails, so Stripe would deliver it again)
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    void(functions, item.number)
    container = functions["automation"].container
    card_on_file(stack, container, account, VISA)
    on_file = container.payments.card_on_file(account.client_id)
    late = container.gateway.charge(
        customer=customer,
        payment_method=on_file.card.payment_method,
        amount_minor=500,
        currency="USD",
        invoice_number=item.number,
        attempt=9,
    )
    payload = event(
        "payment_intent.succeeded",
        {"id": late.intent_id, "object": "payment_intent", "metadata": {"invoice": item.number}},
    )

    def unavailable(**_):
        raise GatewayError("Stripe is unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(functions["payments"].container.gateway, "refund", unavailable)
        with pytest.raises(GatewayError):
            post(functions, payload, signed(payload))
    assert refunds_of(stack, late.intent_id) == [] and refund_mails(stack, account) == []
    # When the operator refunds the void invoice, and then Stripe delivers the webhook again
    answer = invoke(functions, {"refund": item.number, "reason": "the automatic refund failed"})
    again = post(functions, payload, signed(payload))
    # Then the payment is refunded in full once, and the client emailed once
    assert (answer["status"], answer["refunded"], answer["currency"]) == ("void", "5.00", "USD")
    assert json.loads(again["body"])["message"] == "refunded"
    assert len(refunds_of(stack, late.intent_id)) == 1 and len(refund_mails(stack, account)) == 1
    with pytest.raises(PayloadError, match="leave amount out"):
        invoke(functions, {"refund": item.number, "amount": "1.00", "reason": "part"})


def test_a_void_waits_for_a_charge_being_made_right_now(stack, functions, worker, browser):
    # Given a declined invoice whose next charge attempt is being made right now (its claim is live)
    _account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    payments = functions["automation"].container.payments
    assert payments.claim_charge(item.number, 2, datetime.now(UTC), CHARGE_LEASE)
    # When the operator voids it: refused, saying why, and nothing changed
    with pytest.raises(PayloadError, match="being charged to the client's card right now"):
        void(functions, item.number)
    assert status_of(functions, item.number) == "unpaid"
    # Once that try is over without an outcome (its lease ended, nothing made at Stripe) the void goes ahead
    payments.release_charge(item.number, 2)
    assert void(functions, item.number)["status"] == "void"


def test_dunning_and_pay_now_never_charge_a_void_invoice(stack, functions, worker, browser):
    # Given a declined automatic charge whose invoice the operator voided, and a working card saved since
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    void(functions, item.number)
    card_on_file(stack, functions["sso"].container, account, VISA)
    before = len(intents_of(stack, customer))
    # When the dunning days come and the client tries Pay now
    for day in (3, 7):
        assert item.number not in json.dumps(daily(functions, day)["dunning"])
    pay = browser.get(f"/invoices/{item.number}/pay")
    assert pay.status == 303 and pay.location == f"/invoices/{item.number}"
    form = browser.get(f"/invoices/{item.number}")
    assert not form.has("Pay now")
    answer = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=form)
    # Then no PaymentIntent was created, and the invoice stays void
    assert answer.status in (303, 409)
    assert len(intents_of(stack, customer)) == before
    assert status_of(functions, item.number) == "void"
