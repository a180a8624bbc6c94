"""The invoice a business can send: seller and buyer snapshots, tax, the page, the PDF and the email."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from local.stack import EXAMPLE_INVOICE_PROFILE, put_invoice_profile
from postpay.adapters.tables import AccountItem
from postpay.security import hash_password
from tests.integration.billing_helpers import drain, enrolled_account, invoice_mails, invoices_of, invoke
from tests.integration.conftest import new_email, sign_up, verify
from tests.integration.test_client_area import PASSWORD, log_in
from tests.integration.test_invoicing import OCTOBER_SERVERS


@pytest.fixture
def example_profile(stack) -> Iterator[dict[str, str]]:
    """The operator's invoice profile as `make run` sets it (20 % VAT on top); removed afterwards."""
    put_invoice_profile(EXAMPLE_INVOICE_PROFILE)
    parameters.clear_caches()
    yield EXAMPLE_INVOICE_PROFILE
    ssm = boto3.client("ssm")
    ssm.delete_parameters(
        Names=[stack.settings()["INVOICE_PARAMETERS_PATH"] + k for k in EXAMPLE_INVOICE_PROFILE]
    )
    parameters.clear_caches()


def pdf_text(data: bytes) -> str:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (Debian's poppler-utils) is needed: `make test` installs it"
    return subprocess.run(
        [pdftotext, "-layout", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")


def billed_client(stack, functions, new_browser, **account_changes):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    actions = [AccountItem.password_hash.set(hash_password(PASSWORD)), AccountItem.company.set("Engines Ltd")]
    actions += [getattr(AccountItem, k).set(v) for k, v in account_changes.items()]
    account.update(actions=actions)
    browser = new_browser()
    assert log_in(browser, account.email).status == 303
    return account, browser


def test_an_issued_invoice_carries_seller_buyer_and_tax_everywhere(
    stack, functions, worker, new_browser, example_profile
):
    # Given the example seller with 20 % VAT on top, and a client with a billing address and a tax id
    account, browser = billed_client(
        stack,
        functions,
        new_browser,
        billing_address="2 Side Street\nManchester M1 1AA",
        tax_id="GB999999973",
    )
    # When October is invoiced
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    # Then the stored invoice has the snapshots and the tax: 8.19 + 20 % = 1.638 -> 1.64 half-up
    [item] = invoices_of(account.client_id)
    doc = json.loads(item.document)
    assert doc["seller"]["name"] == "Example Hosting Ltd" and doc["seller"]["tax_id"] == "GB123456789"
    assert doc["buyer"] == {
        "name": "Bill Payer",
        "company": "Engines Ltd",
        "email": account.email,
        "address": ["2 Side Street", "Manchester M1 1AA"],
        "tax_id": "GB999999973",
    }
    assert (doc["tax_rate"], doc["tax"], doc["total"], doc["reverse_charge"]) == ("20", "1.64", "9.83", False)
    # and the page shows it all
    page = browser.get(f"/invoices/{item.number}")
    for text in (
        "Example Hosting Ltd",
        "GB123456789",
        "2 Side Street",
        "Engines Ltd",
        "8.19 USD",
        "VAT 20 %",
        "1.64 USD",
        "9.83 USD",
        "2022-10-01 to 2022-10-31",
        "5,000",
        "IBAN GB33",
        "Unpaid",
    ):
        assert page.has(text), text
    assert page.has('href="/invoices/' + item.number + '.pdf"')
    # and the site footer names the seller with its contact and the terms
    assert page.has("billing@example.com") and page.has("Terms of Service")
    # and the PDF, for its owner, says the same in extractable text
    pdf = browser.get(f"/invoices/{item.number}.pdf")
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf"
    text = pdf_text(pdf.raw)
    for expected in ("Invoice " + item.number, "Example Hosting Ltd", "Engines Ltd", "VAT 20 %", "9.83 USD"):
        assert expected in text, expected
    assert re.search(r"Subtotal\s+8\.19 USD", text)
    # and the email greets by name, shows the tax and carries the same PDF
    [mail] = invoice_mails(stack, account.email)
    assert mail.to == [account.email]  # the mailbox names a recipient once (moto lists Destination and To)
    assert "Hello Bill Payer" in mail.html and "1.64 USD" in mail.html and "9.83 USD" in mail.html
    assert "padding:6px 8px" in mail.html
    attached = mail.attachments[f"{item.number}.pdf"]
    assert "9.83 USD" in pdf_text(attached)


def test_the_pdf_is_for_its_owner_only(stack, functions, worker, new_browser):
    owner, owner_browser = billed_client(stack, functions, new_browser)
    _other, other_browser = billed_client(stack, functions, new_browser)
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [item] = invoices_of(owner.client_id)
    assert owner_browser.get(f"/invoices/{item.number}.pdf").status == 200
    assert other_browser.get(f"/invoices/{item.number}.pdf").status == 404
    # a guessed number, path tricks, and a bare ".pdf" (an empty number: not a key DynamoDB takes) are 404s
    for path in (".pdf", "INV-999999.pdf", f"{item.number}.pdf.pdf", f"{item.number}.PDF", "%2e%2e%2f.pdf"):
        assert owner_browser.get(f"/invoices/{path}").status == 404, path
    assert new_browser().get(f"/invoices/{item.number}.pdf").status == 303  # to the login page


def test_reverse_charge_exempts_a_client_from_another_country(
    stack, functions, worker, new_browser, example_profile
):
    account, browser = billed_client(stack, functions, new_browser, tax_id="DE123456789")
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    doc = json.loads(item.document)
    assert (doc["tax_rate"], doc["tax"], doc["total"], doc["reverse_charge"]) == ("20", "0.00", "8.19", True)
    page = browser.get(f"/invoices/{item.number}")
    assert page.has("Reverse charge") and not page.has("VAT 20 %")


def test_an_issued_invoice_never_changes_when_the_account_does(
    stack, functions, worker, new_browser, example_profile
):
    account, browser = billed_client(stack, functions, new_browser, billing_address="Old Road 1")
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [item] = invoices_of(account.client_id)
    form = browser.get("/account")
    saved = browser.post("/account/billing", {"billing_address": "New Road 2", "tax_id": ""}, csrf_from=form)
    assert saved.location == "/account?notice=billing-saved"
    page = browser.get(f"/invoices/{item.number}")
    assert page.has("Old Road 1") and not page.has("New Road 2")


def test_billing_details_are_validated_saved_and_need_csrf(browser, stack):
    email = new_email()
    sign_up(browser, email, password=PASSWORD)
    verify(browser, stack, email)
    page = browser.get("/account")
    assert page.has("Billing details") and page.has('autocomplete="username"')
    bad = browser.post(
        "/account/billing",
        {"billing_address": "\n".join(f"line {i}" for i in range(7)), "tax_id": "not a tax id!"},
        csrf_from=page,
    )
    assert bad.status == 400 and bad.has("Use at most 5 lines.") and bad.has("for example DE123456789")
    assert bad.has("line 6")  # what was typed is kept
    ok = browser.post(
        "/account/billing",
        {"billing_address": " 1 Main St \r\n\r\nParis ", "tax_id": "fr 12.345"},
        csrf_from=page,
    )
    assert ok.status == 303 and ok.location == "/account?notice=billing-saved"
    item = AccountItem.get(email)
    assert (item.billing_address, item.tax_id) == ("1 Main St\nParis", "FR12345")
    assert browser.get(ok.location).has("Your billing details are saved")
    assert browser.post("/account/billing", {"csrf_token": "forged" * 8, "tax_id": "X1"}).status == 403


def test_a_signed_in_client_sees_their_own_navigation_on_a_404(browser, stack):
    email = new_email()
    sign_up(browser, email, password=PASSWORD)
    verify(browser, stack, email)
    missing = browser.get("/no/such/page")
    assert missing.status == 404 and missing.has('action="/logout"') and missing.has(">Invoices<")
    assert not missing.has(">Sign up<")
