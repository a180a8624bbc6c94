"""Card on file: Add a card (a SetupIntent confirmed by Stripe.js), shown, replaced, removed."""

from __future__ import annotations

import json
import re
from html import unescape

import requests

from tests.integration.conftest import new_email, sign_up, verify
from tests.integration.payment_helpers import VISA, card_on_file, stripe_client

PASSWORD = "a long enough passphrase"
MASTERCARD = "5555555555554444"


def signed_in_client(browser, stack):
    email = new_email()
    sign_up(browser, email, password=PASSWORD)
    assert verify(browser, stack, email).has("Log in to SolusVM")
    return email


def words(page) -> str:
    """The page's text as a person reads it: no tags, one space between words."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page.body)).split())


def stripe_js_confirms(stack, page, number: str) -> str:
    """What Stripe.js does in the page: confirm the SetupIntent with the card, straight at the gateway."""
    secret = re.search(r'data-secret="([^"]+)"', page.body).group(1)
    setup_intent = secret.split("_secret_")[0]
    answer = requests.post(
        f"{stack.stripe.url}/v1/setup_intents/{setup_intent}/confirm",
        data=json.dumps(
            {
                "key": "pk_test_local",
                "client_secret": secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                },
            }
        ),
        timeout=5,
    )
    assert answer.json()["status"] == "succeeded"
    return setup_intent


def test_a_client_saves_a_card_and_sees_brand_last4_and_expiry(browser, stack):
    # Given an enrolled, signed-in client without a card
    signed_in_client(browser, stack)
    assert browser.get("/dashboard").has("No card on file")
    # When they open Add a card, Stripe.js confirms the card, and the form is sent
    page = browser.get("/account/card")
    assert page.status == 200 and page.has("Add a card")
    setup_intent = stripe_js_confirms(stack, page, VISA)
    saved = browser.post("/account/card", {"setup_intent": setup_intent}, csrf_from=page)
    # Then the card is on file, shown on the account page and the dashboard
    assert saved.status == 303 and saved.location == "/account?notice=card-saved"
    for path in ("/account", "/dashboard"):
        shown = browser.get(path)
        assert shown.has("Visa ending in 4242") and shown.has("expires 12/2034"), path


def test_only_the_card_page_opens_the_csp_for_stripe(browser, stack):
    signed_in_client(browser, stack)
    card_csp = browser.get("/account/card").headers["Content-Security-Policy"]
    assert f"script-src {stack.stripe.url} 'sha256-" in card_csp
    assert f"connect-src {stack.stripe.url}" in card_csp and "'unsafe-inline'" not in card_csp
    dashboard_csp = browser.get("/dashboard").headers["Content-Security-Policy"]
    assert "script-src" not in dashboard_csp and stack.stripe.url not in dashboard_csp


def test_replacing_the_card_detaches_the_old_one_and_removing_it_leaves_none(browser, stack):
    signed_in_client(browser, stack)
    first = browser.get("/account/card")
    browser.post("/account/card", {"setup_intent": stripe_js_confirms(stack, first, VISA)}, csrf_from=first)
    old = (
        stripe_client(stack)
        .setup_intents.retrieve(re.search(r'data-secret="([^"]+)"', first.body).group(1).split("_secret_")[0])
        .payment_method
    )
    second = browser.get("/account/card")
    assert second.has("Replace your card")
    browser.post(
        "/account/card", {"setup_intent": stripe_js_confirms(stack, second, MASTERCARD)}, csrf_from=second
    )
    assert browser.get("/account").has("ending in 4444")
    assert stripe_client(stack).payment_methods.retrieve(old).customer is None
    confirm = browser.get("/account/card/remove")
    removed = browser.post("/account/card/remove", {"confirm": "yes"}, csrf_from=confirm)
    assert removed.location == "/account?notice=card-removed"
    assert browser.get("/account").has("No card on file")


def test_another_clients_or_an_unconfirmed_setup_is_refused_and_saves_nothing(browser, new_browser, stack):
    # Given two clients; the other one confirmed a card setup
    signed_in_client(browser, stack)
    other = new_browser()
    signed_in_client(other, stack)
    theirs = stripe_js_confirms(stack, other.get("/account/card"), VISA)
    # When this client sends the other's SetupIntent, an unconfirmed one of its own, or garbage
    page = browser.get("/account/card")
    unconfirmed = re.search(r'data-secret="([^"]+)"', page.body).group(1).split("_secret_")[0]
    for setup_intent in (theirs, unconfirmed, "seti_doesnotexist", "<script>"):
        answer = browser.post("/account/card", {"setup_intent": setup_intent}, csrf_from=page)
        # Then 400 with a clear message, and still no card
        assert answer.status == 400 and answer.has("The card was not saved"), setup_intent
    assert browser.get("/account").has("No card on file")


def test_the_card_form_needs_its_csrf_token(browser, stack):
    signed_in_client(browser, stack)
    browser.get("/account/card")
    assert browser.post("/account/card", {"setup_intent": "seti_x", "csrf_token": "x" * 43}).status == 403


def test_a_card_whose_automatic_charge_was_declined_is_not_said_to_be_charged(
    stack, functions, worker, browser
):
    # Given a client whose card on file was declined by the automatic charge of an invoice
    from tests.integration.test_pay_now import client_with_failed_invoice

    account, item, _customer = client_with_failed_invoice(stack, functions, worker, browser)
    # When they open the dashboard and their account
    for path in ("/dashboard", "/account"):
        shown = browser.get(path)
        # Then the card is shown as declined on that invoice, with Replace and Pay now, not as charged
        assert f"This card was declined when we charged invoice {item.number}" in words(shown), path
        assert not shown.has("New invoices are charged to it"), path
        assert f'href="/invoices/{item.number}/pay"' in shown.body and shown.has("Replace the card"), path
    # And once the card is replaced, the new card reads as usual
    card_on_file(stack, functions["sso"].container, account, VISA)
    replaced = browser.get("/dashboard")
    assert replaced.has("New invoices are charged to it") and not replaced.has("was declined")


def saved_card(browser, stack) -> None:
    page = browser.get("/account/card")
    browser.post("/account/card", {"setup_intent": stripe_js_confirms(stack, page, VISA)}, csrf_from=page)


def test_removing_the_card_asks_first_on_a_page_of_its_own(browser, stack):
    # Given a client with a card on file
    signed_in_client(browser, stack)
    saved_card(browser, stack)
    # Then the dashboard and the account page link to the question rather than removing at once
    for path in ("/dashboard", "/account"):
        shown = browser.get(path)
        assert 'href="/account/card/remove"' in shown.body, path
        assert 'action="/account/card/remove"' not in shown.body, path
    # When they press Remove the card: a page asks, with its own CSRF-protected form and a way back
    confirm = browser.get("/account/card/remove")
    assert confirm.status == 200 and confirm.has("Remove your card?") and confirm.has("Visa ending in 4242")
    assert 'action="/account/card/remove"' in confirm.body and confirm.field("csrf_token")
    assert 'href="/account"' in confirm.body and confirm.has("keep the card")
    # a form without the confirmation (a page from before) asks again and removes nothing
    unconfirmed = browser.post("/account/card/remove", {}, csrf_from=confirm)
    assert unconfirmed.status == 200 and unconfirmed.has("Remove your card?")
    # a confirmation without the CSRF token is refused
    forged = browser.post("/account/card/remove", {"confirm": "yes", "csrf_token": "x" * 43})
    assert forged.status == 403
    assert browser.get("/account").has("Visa ending in 4242")
    # When they confirm
    removed = browser.post("/account/card/remove", {"confirm": "yes"}, csrf_from=confirm)
    # Then the card is gone, and Back to the question (or sending it again) just shows the account
    assert removed.status == 303 and removed.location == "/account?notice=card-removed"
    assert browser.get(removed.location).has("No card on file")
    back = browser.get("/account/card/remove")
    assert back.status == 303 and back.location == "/account"
    again = browser.post("/account/card/remove", {"confirm": "yes"}, csrf_from=confirm)
    assert again.status == 303 and browser.get("/account").has("No card on file")


def test_the_removal_question_is_only_for_a_signed_in_client(browser, stack):
    assert browser.get("/account/card/remove").location == "/login"
