"""Daily upkeep: overdue suspension and reactivation, abandoned sign-ups, provisioning retries, schedule."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import requests

from local.stack import SOLUSVM_TOKEN
from postpay.adapters.tables import AccountItem, InvoiceItem, TokenItem
from postpay.security import token_hash
from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke
from tests.integration.conftest import new_email, sign_up, verify_link
from tests.integration.test_invoicing import OCTOBER_SERVERS

AUTH = {"Authorization": f"Bearer {SOLUSVM_TOKEN}"}


def solus_status(stack, user_id: int) -> str:
    return requests.get(f"{stack.emulator.url}users/{user_id}", headers=AUTH, timeout=5).json()["data"][
        "status"
    ]


def make_overdue(number: str, days: int = 30) -> None:
    item = InvoiceItem.get(next(InvoiceItem.by_number.query(number)).account_period)
    item.update(actions=[InvoiceItem.due_on.set((date.today() - timedelta(days=days)).isoformat())])


def daily(functions, day: date) -> dict:
    return invoke(
        functions,
        {"source": "aws.events", "detail-type": "Scheduled Event", "time": f"{day.isoformat()}T06:00:00Z"},
    )


def _invoiced_account(stack, functions, worker):
    account = enrolled_account(stack, functions, servers=OCTOBER_SERVERS)
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    [invoice] = invoices_of(account.client_id)
    return account, invoice


def test_overdue_invoice_suspends_and_payment_reactivates(stack, functions, worker):
    # Given an invoice unpaid past its due date plus the grace days
    account, invoice = _invoiced_account(stack, functions, worker)
    make_overdue(invoice.number, days=15)  # grace is 14 days
    today = date.today()
    # When the daily upkeep runs
    result = daily(functions, today)
    # Then the SolusVM user is suspended and the client is told why
    assert invoice.number in result["upkeep"]["suspended"]
    assert solus_status(stack, account.solus_user_id) == "suspended"
    assert AccountItem.get(account.email).suspended_for == invoice.number
    assert any(invoice.number in m.subject and "overdue" in m.subject for m in stack.mails_to(account.email))
    # and a second day changes nothing and sends nothing more
    mails = len(stack.mails_to(account.email))
    daily(functions, today)
    assert len(stack.mails_to(account.email)) == mails
    # When the operator records the payment
    paid = invoke(functions, {"markPaid": invoice.number, "reference": "bank 2022-11-20"})
    # Then the user is active again and the suspension is cleared
    assert paid == {**paid, "status": "paid", "reactivated": True}
    assert solus_status(stack, account.solus_user_id) == "active"
    assert AccountItem.get(account.email).suspended_for is None
    assert InvoiceItem.get(invoice.account_period).payment_reference == "bank 2022-11-20"


def test_within_grace_days_nothing_happens(stack, functions, worker):
    account, invoice = _invoiced_account(stack, functions, worker)
    make_overdue(invoice.number, days=13)
    daily(functions, date.today())
    assert solus_status(stack, account.solus_user_id) == "active"


def test_a_suspension_the_product_did_not_make_is_never_lifted(stack, functions, worker):
    # Given a user the operator suspended by hand, with an overdue invoice
    account, invoice = _invoiced_account(stack, functions, worker)
    requests.patch(
        f"{stack.emulator.url}users/{account.solus_user_id}",
        json={"status": "suspended"},
        headers=AUTH,
        timeout=5,
    ).raise_for_status()
    make_overdue(invoice.number)
    daily(functions, date.today())
    assert AccountItem.get(account.email).suspended_for is None, "not recorded as ours"
    # When the invoice is paid
    paid = invoke(functions, {"markPaid": invoice.number, "reference": "cash"})
    # Then the operator's suspension stays
    assert paid["reactivated"] is False
    assert solus_status(stack, account.solus_user_id) == "suspended"


def test_paying_twice_is_refused(stack, functions, worker):
    import pytest

    from postpay.billing.commands import PayloadError

    _, invoice = _invoiced_account(stack, functions, worker)
    invoke(functions, {"markPaid": invoice.number, "reference": "first"})
    with pytest.raises(PayloadError, match="is paid, not unpaid"):
        invoke(functions, {"markPaid": invoice.number, "reference": "second"})
    assert InvoiceItem.get(invoice.account_period).payment_reference == "first"


def test_abandoned_signups_are_removed_after_their_link_expired(browser, stack, functions):
    email = new_email()
    sign_up(browser, email)
    token = token_hash(verify_link(stack, email).split("token=")[1])
    TokenItem(token).update(actions=[TokenItem.expires_at.set(int(time.time()) - 60)])
    result = daily(functions, date.today())
    assert result["upkeep"]["pendingRemoved"] >= 1
    assert AccountItem.count(email) == 0 and TokenItem.count(token) == 0, "no trace of the attempt"


def test_only_abandoned_sign_ups_count_as_pending_removed(browser, stack, functions):
    # Given an expired sign-up attempt, and expired links that are no sign-up: a used verification link and
    # a reset link
    gone = int(time.time()) - 60
    email = new_email()
    sign_up(browser, email)
    TokenItem(token_hash(verify_link(stack, email).split("token=")[1])).update(
        actions=[TokenItem.expires_at.set(gone)]
    )
    used_at = datetime.now(UTC) - timedelta(days=1)
    TokenItem(f"used-{email}", purpose="verify", email=email, expires_at=gone, used_at=used_at).save()
    TokenItem(f"reset-{email}", purpose="reset", email=email, expires_at=gone).save()
    now = datetime.now(UTC)
    expired = list(TokenItem.scan(filter_condition=TokenItem.expires_at < int(now.timestamp())))
    abandoned = sum(1 for item in expired if item.purpose == "verify" and item.password_hash)
    # When the daily upkeep sweeps expired tokens
    removed = functions["automation"].container.accounts.delete_expired_tokens(now)
    # Then every expired link is gone, but only the abandoned sign-ups count as removed sign-ups
    assert not list(TokenItem.scan(filter_condition=TokenItem.expires_at < int(now.timestamp())))
    assert removed == abandoned >= 1 and len(expired) >= abandoned + 2


def test_daily_run_retries_provisioning(browser, stack, functions):
    from tests.integration.conftest import fault, verify

    email = new_email()
    sign_up(browser, email)
    fault(stack, mode="status", status=503)
    assert verify(browser, stack, email).has("We are finishing your setup")
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)
    result = daily(functions, date.today())
    assert result["upkeep"]["provisioned"] >= 1
    assert AccountItem.get(email).status == "enrolled"


def test_the_schedule_invoices_on_the_first_in_the_billing_time_zone(stack, functions, worker, monkeypatch):
    # Given Berlin as the billing time zone: 2022-08-31T23:30Z is already September 1st there
    # (August 2022: a month no other test's scheduled run uses)
    import dataclasses

    automation = functions["automation"].container.automation
    berlin = dataclasses.replace(automation.settings, billing_timezone="Europe/Berlin")
    monkeypatch.setattr(automation, "settings", berlin)
    # the Invoicing the run handler builds on first use (automation.invoicing is a proxy: an attribute set on
    # it would not reach the object)
    monkeypatch.setattr(functions["automation"].container.invoicing, "settings", berlin)
    account = enrolled_account(
        stack, functions, servers=[{"plan_id": 1, "created_at": "2022-07-01T00:00:00+00:00"}]
    )
    # When the daily schedule fires on the 31st (local) and on the 1st (local)
    on_31st = invoke(functions, {"source": "aws.events", "time": "2022-08-31T21:30:00Z"})
    on_1st = invoke(functions, {"source": "aws.events", "time": "2022-08-31T23:30:00Z"})
    # Then only the 1st starts a run, for August in Berlin
    assert "run" not in on_31st and on_31st["date"] == "2022-08-31"
    assert on_1st["date"] == "2022-09-01"
    assert on_1st["run"]["period"] == {
        "start": "2022-08-01",
        "end": "2022-08-31",
        "timezone": "Europe/Berlin",
    }
    drain(worker)
    [item] = invoices_of(account.client_id)
    document = json.loads(item.document)
    assert document["timezone"] == "Europe/Berlin" and document["period_start"] == "2022-08-01"
    assert datetime.now(UTC) > datetime(2022, 9, 1, tzinfo=UTC)
