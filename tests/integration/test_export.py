"""exportInvoices: a month's invoices and credit notes as CSV, inline or through a presigned S3 link."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from decimal import Decimal

import pytest
import requests

from postpay.adapters.tables import AccountItem, InvoiceItem
from postpay.billing.commands import PayloadError
from tests.integration.billing_helpers import drain, enrolled_account, invoke
from tests.integration.test_invoice_documents import example_profile  # noqa: F401 (a fixture)
from tests.integration.test_invoicing import OCTOBER_SERVERS


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _expected_invoices(period: str) -> dict[str, InvoiceItem]:
    return {i.number: i for i in InvoiceItem.scan() if i.outcome == "invoiced" and i.period_key == period}


@pytest.mark.usefixtures("example_profile")
def test_the_export_matches_the_months_invoices_and_credit_notes(stack, functions, worker):
    # Given September invoices with 20 % VAT and a buyer with a tax id, one of them voided (a credit note)
    accounts = [enrolled_account(stack, functions, servers=OCTOBER_SERVERS) for _ in range(2)]
    accounts[1].update(
        actions=[AccountItem.company.set("=Engines Ltd"), AccountItem.tax_id.set("GB999999973")]
    )
    invoke(functions, {"invoicingDate": "2022-10-01"})
    drain(worker)
    voided = InvoiceItem.get(f"{accounts[0].client_id}#2022-09")
    note = invoke(functions, {"voidInvoice": voided.number, "reason": "duplicate"})["creditNote"]
    # When the operator exports September
    result = invoke(functions, {"exportInvoices": "2022-09"})
    # Then every invoice of the month is one row with its stored amounts and status, and the credit note too
    rows = _rows(result["csv"])
    expected = _expected_invoices("2022-09")
    invoice_rows = {r["number"]: r for r in rows if r["type"] == "invoice"}
    assert set(invoice_rows) == set(expected) and result["invoices"] == len(expected)
    for number, item in expected.items():
        doc = json.loads(item.document)
        row = invoice_rows[number]
        subtotal = Decimal(doc["total"]) - Decimal(doc.get("tax", "0"))
        assert (row["subtotal"], row["tax"], row["total"], row["currency"], row["status"]) == (
            str(subtotal),
            doc.get("tax", "0"),
            doc["total"],
            doc["currency"],
            item.status,
        )
        buyer = doc.get("buyer") or {}
        if buyer:
            assert (row["company"], row["tax_id"]) == (
                ("'" + buyer["company"]) if buyer["company"].startswith("=") else buyer["company"],
                buyer["tax_id"],
            )
        assert (row["client"], row["issued_on"], row["due_on"]) == (
            str(item.client_id),
            doc["issued_on"],
            doc["due_on"],
        )
    assert invoice_rows[voided.number]["status"] == "void"
    [cn] = [r for r in rows if r["number"] == note["number"]]
    assert (cn["type"], cn["invoice"], cn["total"]) == ("credit_note", voided.number, note["total"])
    assert (cn["subtotal"], cn["tax"]) == (note["subtotal"], note["tax"])
    # and a company name a spreadsheet would run as a formula stays text
    engines = invoice_rows[InvoiceItem.get(f"{accounts[1].client_id}#2022-09").number]
    assert (engines["company"], engines["tax_id"], engines["tax"]) == ("'=Engines Ltd", "GB999999973", "0.54")
    assert list(rows[0]) == [
        "type",
        "number",
        "issued_on",
        "due_on",
        "period",
        "client",
        "company",
        "tax_id",
        "subtotal",
        "tax",
        "total",
        "currency",
        "status",
        "invoice",
        "refunded",
        "carried_in",
        "carried_to",
    ]
    # nothing was refunded: an invoice's refunded cell is 0.00, a credit note's is empty
    assert {r["refunded"] for r in invoice_rows.values()} == {"0.00"} and cn["refunded"] == ""
    # nothing was carried below the minimum: both carry cells are empty
    assert {(r["carried_in"], r["carried_to"]) for r in rows} == {("", "")}


def test_a_large_export_is_a_presigned_link_to_a_private_encrypted_object(
    stack, functions, worker, monkeypatch
):
    # Given a month with invoices and an inline limit smaller than its CSV
    enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    invoke(functions, {"invoicingDate": "2022-12-01"})
    drain(worker)
    inline = invoke(functions, {"exportInvoices": "2022-11"})["csv"]
    automation = functions["automation"].container.automation
    monkeypatch.setattr(
        automation, "settings", dataclasses.replace(automation.settings, export_inline_bytes=10)
    )
    # When the operator exports it
    result = invoke(functions, {"exportInvoices": "2022-11"})
    # Then the answer is a link, and the link gives the same CSV
    assert "csv" not in result and result["expiresInSeconds"] == 3600
    assert result["key"].startswith("exports/invoices-2022-11-")
    answer = requests.get(result["url"], timeout=10)
    assert answer.status_code == 200 and answer.text == inline
    import boto3

    head = boto3.client("s3").head_object(Bucket="postpay-local-exports", Key=result["key"])
    assert head["ServerSideEncryption"] == "AES256"
    # and the object is not public
    unsigned = result["url"].split("?", 1)[0]
    assert requests.get(unsigned, timeout=10).status_code == 403


@pytest.mark.parametrize("period", ["2022-13", "2022-1", 202210, None])
def test_a_malformed_export_period_is_refused(functions, period):
    with pytest.raises(PayloadError, match="exportInvoices must be a month like 2022-10"):
        invoke(functions, {"exportInvoices": period})
