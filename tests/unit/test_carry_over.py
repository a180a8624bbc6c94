"""The carry-over below the gateway's minimum (CARRY_BELOW_MINIMUM): the rule, the setting, the invoice it
builds (the carried balance after tax, never taxed again), how it is stored, and what the PDF prints."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from postpay.adapters.invoice_documents import invoice_document, to_invoice
from postpay.billing.automation import invoice_summary
from postpay.billing.invoicing import Invoicing, Job
from postpay.billing.pdf import invoice_pdf
from postpay.config import ConfigError, Settings
from postpay.models import CarriedBalance, InvoiceStatus, Pricing
from postpay.payments import carries_forward
from postpay.periods import Period
from tests.unit.fakes import FakeAccounts, FakeBilling, FakeMailer, FakeQueue, FakeSolus, FixedClock
from tests.unit.test_config import BASE
from tests.unit.test_invoicing_jobs import USER, usage
from tests.unit.test_payments import STRIPE
from tests.unit.test_tax_and_invoice_document import invoice, item_for, pdf_text, profile

CARRY = {**BASE, **STRIPE, "CARRY_BELOW_MINIMUM": "true"}


# the rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "currency", "carried"),
    [
        ("0.49", "USD", True),
        ("0.50", "USD", False),  # exactly the minimum is charged
        ("0.01", "USD", True),
        ("0.00", "USD", False),  # nothing to carry
        ("0.49", "eur", True),
        ("0.50", "EUR", False),
        ("0.29", "GBP", True),
        ("0.30", "GBP", False),
        ("49", "JPY", True),  # no minor unit
        ("50", "JPY", False),
        ("0.499", "KWD", True),  # three decimals; no entry: the USD figure
        ("0.500", "KWD", False),
    ],
)
def test_a_total_below_the_currencys_minimum_is_carried_when_the_operator_turns_it_on(
    total, currency, carried
):
    assert carries_forward(Settings.from_env(CARRY), D(total), currency) is carried


def test_the_carry_over_is_off_by_default_and_needs_stripe():
    assert Settings.from_env({**BASE, **STRIPE}).carry_below_minimum is False
    assert not carries_forward(Settings.from_env({**BASE, **STRIPE}), D("0.01"), "USD")
    # on, but without Stripe: everything is paid by transfer, nothing is carried
    without = Settings.from_env({**BASE, "CARRY_BELOW_MINIMUM": "true"})
    assert without.carry_below_minimum and not carries_forward(without, D("0.01"), "USD")


@pytest.mark.parametrize("value", ["yes", "1", "on"])
def test_a_malformed_carry_setting_fails_the_start_naming_it(value):
    with pytest.raises(ConfigError, match="CARRY_BELOW_MINIMUM must be true or false"):
        Settings.from_env({**CARRY, "CARRY_BELOW_MINIMUM": value})


# the invoices it builds ----------------------------------------------------------------------------

OCTOBER = Period(date(2022, 10, 1), date(2022, 10, 31), "UTC")
NOVEMBER = Period(date(2022, 11, 1), date(2022, 11, 30), "UTC")


def month_usage(period: Period, *tokens: int) -> dict:
    answer = usage(*tokens)
    answer["data"].update(date_from=period.start.isoformat(), date_to=period.end.isoformat())
    return answer


def invoicing(env: dict, billing: FakeBilling, solus: FakeSolus) -> Invoicing:
    return Invoicing(
        settings=Settings.from_env(env),
        accounts=FakeAccounts(),
        billing=billing,
        solus=solus,
        mailer=FakeMailer(),
        clock=FixedClock(datetime(2022, 12, 1, 0, 5, tzinfo=UTC)),
        pricing=lambda: Pricing(D("0.001"), "USD"),
        queue=FakeQueue(),
        profile=lambda: profile("20"),  # 20 % on top
    )


def bill(subject: Invoicing, billing: FakeBilling, period: Period):
    billing.start_run(f"run-{period.key}", trigger="t", period=period.as_dict(), now=datetime.now(UTC))
    job = Job(f"run-{period.key}", 7, "ada@example.com", USER, period)
    assert subject.process(job, final_attempt=False) == "invoiced"
    assert subject.process(job, final_attempt=False) == "invoiced"  # a redelivery changes nothing
    return billing.billed(7, period.key)[1]


def test_the_next_invoice_adds_the_carried_total_after_tax_and_the_earlier_names_it():
    # Given October at 0.10 USD + 20 % = 0.12 (below 0.50), carried
    billing, solus = FakeBilling(), FakeSolus(usage_by_user={USER: month_usage(OCTOBER, 100)})
    subject = invoicing(CARRY, billing, solus)
    october = bill(subject, billing, OCTOBER)
    assert (october.total, october.tax, october.status) == (D("0.12"), D("0.02"), InvoiceStatus.CARRIED)
    # When November (5.00 + 1.00 tax) is invoiced
    solus.usage_by_user[USER] = month_usage(NOVEMBER, 5000)
    november = bill(subject, billing, NOVEMBER)
    # Then it carries October's 0.12 after its tax: the tax is November's lines' only
    assert november.carried_in == (CarriedBalance(number=october.number, amount=D("0.12")),)
    assert (november.subtotal, november.tax, november.total) == (D("5.00"), D("1.00"), D("6.12"))
    assert november.subtotal + november.tax + november.carried_total == november.total
    assert november.status is InvoiceStatus.UNPAID
    # and October is carried to November, once
    assert billing.billed(7, OCTOBER.key)[1].carried_to == november.number
    assert billing.counter == 2


def test_a_next_invoice_still_below_the_minimum_is_carried_again_with_the_sum():
    billing, solus = FakeBilling(), FakeSolus(usage_by_user={USER: month_usage(OCTOBER, 100)})
    subject = invoicing(CARRY, billing, solus)
    october = bill(subject, billing, OCTOBER)
    solus.usage_by_user[USER] = month_usage(NOVEMBER, 200)  # 0.20 + 0.04 tax
    november = bill(subject, billing, NOVEMBER)
    assert (november.total, november.status) == (D("0.36"), InvoiceStatus.CARRIED)
    assert november.carried_in == (CarriedBalance(number=october.number, amount=D("0.12")),)


def test_off_by_default_a_small_invoice_stays_payable_by_transfer_and_nothing_is_carried():
    billing, solus = FakeBilling(), FakeSolus(usage_by_user={USER: month_usage(OCTOBER, 100)})
    subject = invoicing({**BASE, **STRIPE}, billing, solus)
    october = bill(subject, billing, OCTOBER)
    assert october.status is InvoiceStatus.UNPAID
    solus.usage_by_user[USER] = month_usage(NOVEMBER, 5000)
    assert bill(subject, billing, NOVEMBER).carried_in == ()


# stored, listed and printed ------------------------------------------------------------------------


def test_the_carried_lines_are_stored_with_the_invoice_and_carried_to_is_its_state():
    carrying = invoice(carried_in=(CarriedBalance(number="INV-000000", amount=D("0.12")),), total=D("15.12"))
    assert to_invoice(item_for(invoice_document(carrying))) == carrying
    assert json.loads(invoice_document(carrying))["carried_in"] == [
        {"number": "INV-000000", "amount": "0.12"}
    ]
    assert "carried_in" not in json.loads(invoice_document(invoice()))  # as before when there is none
    item = item_for(invoice_document(invoice()), status="carried")
    item.carried_to = "INV-000002"
    assert (
        to_invoice(item).carried_to == "INV-000002" and to_invoice(item).carry_note == "Carried to INV-000002"
    )


def test_rows_name_where_a_carried_total_went_and_what_an_invoice_carries():
    carried = invoice(status=InvoiceStatus.CARRIED, carried_to="INV-000002")
    row = invoice_summary(carried, date(2026, 12, 1), D("0"))
    assert (row["status"], row["carriedTo"], row["overdue"]) == ("carried", "INV-000002", False)
    carrying = invoice(carried_in=(CarriedBalance(number="INV-000000", amount=D("0.12")),), total=D("15.12"))
    assert invoice_summary(carrying, date(2026, 12, 1), D("0"))["carriedFrom"] == [
        {"invoice": "INV-000000", "amount": "0.12"}
    ]
    assert "carriedTo" not in invoice_summary(invoice(), date(2026, 12, 1), D("0"))


def test_the_pdf_prints_the_carried_line_and_where_a_carried_total_went():
    carrying = invoice(carried_in=(CarriedBalance(number="INV-000000", amount=D("0.12")),), total=D("15.12"))
    text = pdf_text(invoice_pdf(carrying, today=date(2026, 11, 2)))
    assert "Balance carried from INV-000000" in text and "0.12" in text and "15.12" in text
    carried = invoice(status=InvoiceStatus.CARRIED, carried_to="INV-000002", total=D("0.12"))
    text = pdf_text(invoice_pdf(carried, today=date(2026, 11, 2)))
    assert "Carried to INV-000002" in text and "How to pay" not in text
    open_carried = replace(carried, carried_to=None)
    assert "Carried to your next invoice" in pdf_text(invoice_pdf(open_carried, today=date(2026, 11, 2)))


def test_a_month_with_nothing_to_bill_leaves_the_balance_carried_for_the_next_invoice():
    # Given October carried (0.12), and a November with no usage
    billing, solus = FakeBilling(), FakeSolus(usage_by_user={USER: month_usage(OCTOBER, 100)})
    subject = invoicing(CARRY, billing, solus)
    october = bill(subject, billing, OCTOBER)
    solus.usage_by_user[USER] = month_usage(NOVEMBER)
    billing.start_run("run-nov", trigger="t", period=NOVEMBER.as_dict(), now=datetime.now(UTC))
    job = Job("run-nov", 7, "ada@example.com", USER, NOVEMBER)
    assert subject.process(job, final_attempt=False) == "nothing_to_bill"
    # Then October stays carried, waiting
    assert billing.billed(7, OCTOBER.key)[1].carried_to is None
    # and December's invoice takes it
    december = Period(date(2022, 12, 1), date(2022, 12, 31), "UTC")
    solus.usage_by_user[USER] = month_usage(december, 5000)
    taken = bill(subject, billing, december)
    assert taken.carried_in == (CarriedBalance(number=october.number, amount=D("0.12")),)
    assert billing.billed(7, OCTOBER.key)[1].carried_to == taken.number
