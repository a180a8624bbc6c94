"""The operator's desk: account lookup, invoice listing, payments in bulk, resending, the daily job."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from local.events import LambdaContext
from postpay.adapters.tables import AccountItem, InvoiceItem
from postpay.billing.commands import PayloadError
from tests.integration.billing_helpers import drain, enrolled_account, invoice_mails, invoices_of, invoke
from tests.integration.test_invoicing import OCTOBER_SERVERS
from tests.integration.test_upkeep import make_overdue


def _invoiced(stack, functions, worker, *, months=("2022-11-01",)):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    for month in months:
        invoke(functions, {"invoicingDate": month})
    drain(worker)
    return account, sorted(invoices_of(account.client_id), key=lambda i: i.period_key)


def _snapshot(client_id: int) -> list[dict]:
    return sorted(
        (item.attribute_values for item in InvoiceItem.by_client.query(client_id)), key=lambda v: v["number"]
    )


def test_account_lookup_by_email_and_by_client_id(stack, functions, worker):
    # Given an invoiced, enrolled account
    account, [invoice] = _invoiced(stack, functions, worker)
    # When the operator looks it up by email and by client id
    by_email = invoke(functions, {"account": account.email.upper()})
    by_id = invoke(functions, {"account": account.client_id})
    # Then both show its status, SolusVM user, enrollment and invoices
    assert by_email == by_id
    assert by_email["status"] == "enrolled" and by_email["solusUserId"] == account.solus_user_id
    assert by_email["enrolledAt"].startswith("2020-01-01") and by_email["suspendedFor"] is None
    assert [i["number"] for i in by_email["invoices"]] == [invoice.number]
    assert by_email["invoices"][0]["status"] == "unpaid" and by_email["invoices"][0]["total"] == "8.19"
    assert by_email["terms"] == []  # this factory's account accepted nothing; a real sign-up's are below


def test_account_lookup_shows_the_terms_accepted(stack, functions, browser):
    from tests.integration.conftest import new_email, sign_up, verify

    email = new_email()
    sign_up(browser, email)
    verify(browser, stack, email)
    client_id = AccountItem.get(email).client_id
    found = invoke(functions, {"account": str(client_id)})
    assert found["email"] == email and found["terms"]
    assert {"document", "version", "acceptedAt", "sourceIp", "userAgent"} <= set(found["terms"][0])


@pytest.mark.parametrize("who", ["nobody-here@example.com", 987654321])
def test_an_unknown_account_is_refused(functions, who):
    with pytest.raises(PayloadError, match="no account"):
        invoke(functions, {"account": who})


def test_list_invoices_filters_and_pages_with_a_cursor(stack, functions, worker):
    # Given one client with invoices for three months, one of them paid and one overdue
    account, invoices = _invoiced(stack, functions, worker, months=("2022-10-01", "2022-11-01", "2022-12-01"))
    september, october, november = invoices
    invoke(functions, {"markPaid": september.number, "reference": "bank"})
    make_overdue(november.number, days=30)
    client = account.client_id
    # When the operator pages through them two at a time
    first = invoke(functions, {"listInvoices": {"client": client, "limit": 2}})
    second = invoke(functions, {"listInvoices": {"client": client, "limit": 2, "after": first["after"]}})
    # Then every invoice is listed once, in number order, and the last page has no cursor
    numbers = [i["number"] for i in first["invoices"] + second["invoices"]]
    assert numbers == sorted(i.number for i in invoices) and second["after"] is None and first["count"] == 2

    # and each filter narrows the list
    def listed(**filters):
        return [
            i["number"]
            for i in invoke(functions, {"listInvoices": {"client": client, **filters}})["invoices"]
        ]

    assert listed(status="paid") == [september.number]
    assert listed(status="unpaid") == [october.number, november.number]
    assert listed(status="overdue") == [november.number]
    assert listed(period="2022-10") == [october.number]
    # and without a client the status index finds them too
    overdue = invoke(functions, {"listInvoices": {"status": "overdue", "limit": 1000}})["invoices"]
    assert november.number in [i["number"] for i in overdue]
    assert all(i["status"] == "unpaid" and i["overdue"] is True for i in overdue)
    # and every row says whether it is overdue, its status as stored
    rows = invoke(functions, {"listInvoices": {"client": client, "status": "overdue"}})["invoices"]
    assert [(i["number"], i["status"], i["overdue"]) for i in rows] == [(november.number, "unpaid", True)]
    rows = invoke(functions, {"listInvoices": {"client": client, "period": "2022-09"}})["invoices"]
    rows += invoke(functions, {"listInvoices": {"client": client, "period": "2022-10"}})["invoices"]
    assert [(i["status"], i["overdue"]) for i in rows] == [("paid", False), ("unpaid", False)]
    shown = {i["number"]: i["overdue"] for i in invoke(functions, {"account": client})["invoices"]}
    assert shown[september.number] is False and shown[october.number] is False
    everything = invoke(functions, {"listInvoices": {"period": "2022-10", "limit": 1000}})["invoices"]
    assert october.number in [i["number"] for i in everything] and all(
        i["period"] == "2022-10" for i in everything
    )


def test_mark_paid_takes_a_bank_statement_all_or_nothing(stack, functions, worker):
    _, [a] = _invoiced(stack, functions, worker)
    _other, [b] = _invoiced(stack, functions, worker)
    # When a statement names an unknown invoice, nothing is recorded
    with pytest.raises(PayloadError, match="no invoice 'INV-999999'"):
        invoke(
            functions,
            {
                "markPaid": [
                    {"invoice": a.number, "reference": "stmt 1"},
                    {"invoice": "INV-999999", "reference": "stmt 2"},
                ]
            },
        )
    assert InvoiceItem.get(a.account_period).status == "unpaid"
    # When it names two unpaid invoices, both are paid with their references
    result = invoke(
        functions,
        {
            "markPaid": [
                {"invoice": a.number, "reference": "stmt 1"},
                {"invoice": b.number, "reference": "stmt 2"},
            ]
        },
    )
    assert result["count"] == 2 and [p["invoice"] for p in result["paid"]] == [a.number, b.number]
    assert InvoiceItem.get(b.account_period).payment_reference == "stmt 2"
    # and importing the same statement again is refused whole
    with pytest.raises(PayloadError, match=f"invoice {a.number} is paid, not unpaid"):
        invoke(functions, {"markPaid": [{"invoice": a.number, "reference": "stmt 1"}]})


def test_resend_invoice_emails_it_again_and_says_so_on_its_history(stack, functions, worker):
    account, [invoice] = _invoiced(stack, functions, worker)
    assert len(invoice_mails(stack, account.email)) == 1
    result = invoke(functions, {"resendInvoice": invoice.number})
    mails = invoice_mails(stack, account.email)
    assert len(mails) == 2 and invoice.number in mails[-1].subject
    assert result["emailedTo"] == account.email
    [entry] = result["history"]
    assert entry["event"] == "emailed again" and entry["messageId"] == result["messageId"]
    invoke(functions, {"resendInvoice": invoice.number})
    assert len(json.loads(json.dumps(InvoiceItem.get(invoice.account_period).history))) == 2
    with pytest.raises(PayloadError, match="no invoice 'INV-999999'"):
        invoke(functions, {"resendInvoice": "INV-999999"})


def test_schedule_daily_runs_the_daily_job_now(functions):
    from postpay.adapters.runs_store import DAILY_HEARTBEAT
    from postpay.adapters.tables import RunItem

    def heartbeat():
        try:
            return RunItem.get(DAILY_HEARTBEAT, consistent_read=True).updated_at
        except RunItem.DoesNotExist:
            return None

    before = heartbeat()
    result = invoke(functions, {"schedule": "daily"})
    assert set(result) >= {"date", "upkeep"}
    # an operator's run of the daily job is not the schedule's: MissedDailyRun still sees a missed day
    assert "hoursSinceLastDailyRun" not in result and heartbeat() == before


@pytest.mark.parametrize(
    "payload",
    [
        {"listInvoices": {"status": "late"}},
        {"markPaid": [{"invoice": "INV-1"}]},
        {"resendInvoice": 5},
        {"account": ""},
        {"schedule": "weekly"},
        {"voidInvoice": "INV-000001"},
    ],
)
def test_refused_payloads_fail_the_invoke_and_change_nothing(stack, functions, worker, payload):
    account, _ = _invoiced(stack, functions, worker)
    before, mails = _snapshot(account.client_id), len(stack.mails_to(account.email))
    with pytest.raises(PayloadError):
        invoke(functions, payload)
    assert _snapshot(account.client_id) == before and len(stack.mails_to(account.email)) == mails


def test_every_accepted_payload_is_logged_with_its_invoker(functions, caplog):
    # Given an invoke whose context carries a Cognito identity (as a mobile SDK's would)
    caplog.set_level("INFO", logger="postpay")
    context = LambdaContext(function_name="automation")
    context.identity = SimpleNamespace(  # type: ignore[attr-defined]
        cognito_identity_id="eu-west-1:abc", cognito_identity_pool_id="eu-west-1:pool"
    )
    # When an accepted and a refused payload arrive
    functions["automation"].handler({"listInvoices": {"limit": 1}}, context)
    with pytest.raises(PayloadError):
        functions["automation"].handler({"listInvoices": {"limit": 0}}, context)
    # Then the accepted one is logged once, with the invoked ARN, the request id and the identity
    [record] = [r for r in caplog.records if r.getMessage() == "automation payload accepted"]
    assert record.__dict__["payload"] == "listInvoices" and record.__dict__["audit"] is True
    invoker = record.__dict__["invoker"]
    assert invoker["invokedFunctionArn"] == context.invoked_function_arn
    assert invoker["requestId"] == context.aws_request_id
    assert invoker["cognitoIdentityId"] == "eu-west-1:abc"
