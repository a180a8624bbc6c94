"""Pay now: a client pays an unpaid invoice with the card on file; 3-D Secure goes through Stripe.js."""

from __future__ import annotations

import json
import re
from datetime import date

import requests

from postpay.adapters.tables import AccountItem
from postpay.security import hash_password
from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke
from tests.integration.payment_helpers import DECLINED_AFTER_ATTACH, JUNE_2026, VISA, card_on_file, intents_of
from tests.integration.test_upkeep import daily, make_overdue, solus_status

SEPTEMBER = [{"plan_id": 1, "created_at": "2026-05-15T00:00:00+00:00", "name": "web-1"}]
THREE_D_SECURE = "4000002760003184"  # every charge asks the bank's authentication
PASSWORD = "a long enough passphrase"


def client_with_failed_invoice(stack, functions, worker, browser):
    """An enrolled client whose automatic charge was declined, logged in in ``browser``."""
    container = functions["automation"].container
    account = enrolled_account(stack, functions, servers=SEPTEMBER, enrolled_at=JUNE_2026)
    AccountItem(account.email).update(actions=[AccountItem.password_hash.set(hash_password(PASSWORD))])
    customer = card_on_file(stack, container, account, DECLINED_AFTER_ATTACH)
    invoke(functions, {"invoicingDate": "2026-07-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    form = browser.get("/login")
    assert (
        browser.post("/login", {"email": account.email, "password": PASSWORD}, csrf_from=form).status == 303
    )
    return account, item, customer


def test_pay_now_with_a_new_card_pays_the_failed_invoice_once(stack, functions, worker, browser):
    # Given an invoice whose automatic charge was declined
    account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    page = browser.get(f"/invoices/{item.number}")
    assert page.has("Pay now")
    # When the client replaces the card and pays now (twice: a double click)
    card_on_file(stack, functions["sso"].container, account, VISA)
    pay = browser.get(f"/invoices/{item.number}/pay")
    assert pay.has("Pay 5.00 USD with Visa ending in 4242")
    paid = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    again = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    # Then the invoice is paid by card, with one succeeded PaymentIntent, and Pay now is gone
    assert paid.status == 303 and paid.location == f"/invoices/{item.number}?notice=paid"
    assert again.status == 303  # the paid invoice's pay page sends back to the invoice
    shown = browser.get(paid.location)
    assert shown.has("Thank you: the invoice is paid.") and shown.has("by card") and not shown.has("Pay now")
    succeeded = [i for i in intents_of(stack, customer) if i.status == "succeeded"]
    assert len(succeeded) == 1 and succeeded[0].amount == 500


def test_pay_now_with_3d_secure_goes_through_the_banks_step(stack, functions, worker, browser):
    account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    card_on_file(stack, functions["sso"].container, account, THREE_D_SECURE)
    pay = browser.get(f"/invoices/{item.number}/pay")
    # When the client pays: the bank asks for authentication
    step = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    assert step.status == 200 and step.has("Your bank asks you to confirm")
    assert "script-src" in step.headers["Content-Security-Policy"]
    secret = re.search(r'data-secret="([^"]+)"', step.body).group(1)
    intent = step.field("payment_intent")
    # a reload of Pay now offers the same PaymentIntent, never a second one
    again = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    assert again.field("payment_intent") == intent
    # and Stripe.js completes the bank's step, then the page reports back
    requests.post(
        f"{stack.stripe.url}/v1/payment_intents/{intent}/_authenticate?success=true",
        data=json.dumps({"key": "pk_test_local", "client_secret": secret}),
        timeout=5,
    ).raise_for_status()
    done = browser.post(f"/invoices/{item.number}/authenticated", {"payment_intent": intent}, csrf_from=step)
    # Then the invoice is paid with that PaymentIntent
    assert done.location == f"/invoices/{item.number}?notice=paid"
    invoice = functions["sso"].container.billing.invoice_by_number(item.number)
    assert invoice.status.value == "paid" and invoice.payment_reference == f"card {intent}"


def test_a_forged_payment_intent_does_not_pay(stack, functions, worker, browser):
    _account, item, customer = client_with_failed_invoice(stack, functions, worker, browser)
    pay = browser.get(f"/invoices/{item.number}/pay")
    [declined] = intents_of(stack, customer)
    for forged in ("pi_someone_elses", declined.id + "x", "<script>"):
        answer = browser.post(
            f"/invoices/{item.number}/authenticated", {"payment_intent": forged}, csrf_from=pay
        )
        assert answer.status == 400, forged
    assert functions["sso"].container.billing.invoice_by_number(item.number).status.value == "unpaid"


def test_pay_now_with_a_declining_card_says_so(stack, functions, worker, browser):
    _account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    pay = browser.get(f"/invoices/{item.number}/pay")
    answer = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    assert answer.status == 402 and answer.has("The payment did not go through")
    assert not answer.has(".."), "the decline reason's own period is not doubled"


def test_another_clients_invoice_cannot_be_paid_or_seen(stack, functions, worker, browser, new_browser):
    _account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    other = new_browser()
    _other_account, _other_item, _ = client_with_failed_invoice(stack, functions, worker, other)
    assert other.get(f"/invoices/{item.number}/pay").status == 404


def test_pay_now_finishes_an_automatic_charge_that_never_finished(stack, functions, worker, browser):
    # Given a declined invoice whose next try was claimed but never finished, its lease run out
    from datetime import UTC, datetime, timedelta

    from postpay.billing.collection import CHARGE_LEASE

    account, item, _ = client_with_failed_invoice(stack, functions, worker, browser)
    container = functions["sso"].container
    customer = card_on_file(stack, container, account, VISA)
    long_ago = datetime.now(UTC) - CHARGE_LEASE - timedelta(minutes=1)
    assert container.payments.claim_charge(item.number, 2, long_ago, CHARGE_LEASE)
    # When the client pays now
    pay = browser.get(f"/invoices/{item.number}/pay")
    paid = browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay)
    # Then that try is the one made, and the invoice is paid (not "being charged" forever)
    assert paid.status == 303 and paid.location == f"/invoices/{item.number}?notice=paid"
    statuses = sorted(i.status for i in intents_of(stack, customer))
    assert statuses == ["requires_payment_method", "succeeded"], "the declined first try and this one"
    assert container.payments.charge_of(item.number).attempt == 2


def test_a_suspended_client_who_pays_now_is_reactivated(stack, functions, worker, browser):
    # Given a client suspended for the invoice whose automatic charge was declined
    account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    make_overdue(item.number, days=15)
    assert item.number in daily(functions, date.today())["upkeep"]["suspended"]
    # When the client saves a working card and pays now
    card_on_file(stack, functions["sso"].container, account, VISA)
    pay = browser.get(f"/invoices/{item.number}/pay")
    assert browser.post(f"/invoices/{item.number}/pay", {}, csrf_from=pay).status == 303
    # Then the SolusVM user is active again and the suspension is cleared
    assert solus_status(stack, account.solus_user_id) == "active"
    assert AccountItem.get(account.email).suspended_for is None
