"""A worker's batch reads its clients' cards on file once (Stripe configured): a client without a card costs
no card read for its email or its charge, a client with one is still charged from a fresh read, and a
failed batch read leaves each job to read its own card as before."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from postpay.billing.collection import Collection
from postpay.billing.invoicing import Invoicing, Job
from postpay.config import Settings
from postpay.models import Account, AccountStatus, InvoiceStatus, Pricing
from postpay.payments import Card, CardOnFile
from tests.unit.fakes import FakeAccounts, FakeBilling, FakeMailer, FakeQueue, FakeSolus, FixedClock
from tests.unit.payment_fakes import FakeGateway, FakePaymentsStore
from tests.unit.test_config import BASE
from tests.unit.test_invoicing_jobs import OCTOBER, usage
from tests.unit.test_payments import STRIPE

VISA = Card(payment_method="pm_visa", brand="visa", last4="4242", exp_month=12, exp_year=2030)
ADA, BOB = 7, 8  # Ada has a card on file, Bob has none


class CountingPayments(FakePaymentsStore):
    def __init__(self) -> None:
        super().__init__()
        self.card_reads: list[int] = []
        self.batch_reads: list[list[int]] = []
        self.batch_fails = False

    def card_on_file(self, client_id: int) -> CardOnFile | None:
        self.card_reads.append(client_id)
        return super().card_on_file(client_id)

    def clients_with_cards(self, client_ids: list[int]) -> set[int]:
        self.batch_reads.append(list(client_ids))
        if self.batch_fails:
            raise RuntimeError("DynamoDB unreachable")
        return super().clients_with_cards(client_ids)


class World:
    def __init__(self) -> None:
        settings = Settings.from_env({**BASE, **STRIPE})
        clock = FixedClock(datetime(2022, 11, 1, 0, 5, tzinfo=UTC))
        self.payments, self.gateway, self.mailer = CountingPayments(), FakeGateway(), FakeMailer()
        self.billing, accounts = FakeBilling(), FakeAccounts()
        self.payments.cards[ADA] = CardOnFile(customer="cus_ada", card=VISA)
        self.gateway.customers["cus_ada"] = "ada@example.com"
        self.gateway.methods[VISA.payment_method] = VISA
        collection = Collection(
            settings=settings,
            payments=self.payments,
            gateway=self.gateway,
            invoices=self.billing,
            mailer=self.mailer,
            clock=clock,
        )
        bobs = usage(4900, 100)
        bobs["data"]["user_id"] = 13
        solus = FakeSolus(usage_by_user={12: usage(4900, 100), 13: bobs})
        self.invoicing = Invoicing(
            settings=settings,
            accounts=accounts,
            billing=self.billing,
            solus=solus,
            mailer=self.mailer,
            clock=clock,
            pricing=lambda: Pricing(Decimal("0.001"), "USD"),
            queue=FakeQueue(),
            collect=collection.charge,
            card_to_charge=collection.card_to_charge,
            with_cards=collection.clients_with_cards,
        )
        for client_id, name in ((ADA, "ada"), (BOB, "bob")):
            accounts.add(
                Account(
                    email=f"{name}@example.com",
                    client_id=client_id,
                    name=name.title(),
                    company="",
                    password_hash="x",
                    status=AccountStatus.ENROLLED,
                    created_at=datetime(2022, 1, 1, tzinfo=UTC),
                    enrolled_at=datetime(2022, 1, 1, tzinfo=UTC),
                    solus_user_id=12 if client_id == ADA else 13,
                )
            )
        self.billing.start_run("run-1", trigger="operator", period=OCTOBER.as_dict(), now=clock.now())

    def jobs(self) -> list[Job]:
        return [
            Job("run-1", ADA, "ada@example.com", 12, OCTOBER),
            Job("run-1", BOB, "bob@example.com", 13, OCTOBER),
        ]

    def batch(self) -> list[str]:
        prepared = self.invoicing.prepare(self.jobs())
        return [self.invoicing.finish(item, final_attempt=False) for item in prepared]

    def email_of(self, client_id: int) -> dict:
        [mail] = [
            m.context
            for m in self.mailer.sent
            if m.template == "invoice" and m.context["invoice"].client_id == client_id
        ]
        return mail

    def status_of(self, client_id: int) -> InvoiceStatus:
        billed = self.billing.billed(client_id, OCTOBER.key)
        assert billed is not None and billed[1] is not None
        return billed[1].status


def test_a_batch_reads_its_cards_once_and_a_client_without_one_costs_no_card_read():
    world = World()
    assert world.batch() == ["invoiced", "invoiced"]
    assert world.payments.batch_reads == [[ADA, BOB]]
    # Bob: no read for his email nor for a charge; his email offers Pay now and he is not charged
    assert BOB not in world.payments.card_reads
    assert world.email_of(BOB)["card"] is None and world.email_of(BOB)["pay_url"]
    assert world.status_of(BOB) is InvoiceStatus.UNPAID
    # Ada: her email names the card, and the charge reads the card again before it charges
    assert world.email_of(ADA)["card"] == VISA and ADA in world.payments.card_reads
    assert world.status_of(ADA) is InvoiceStatus.PAID


def test_a_failed_batch_read_leaves_each_job_to_read_its_own_card():
    world = World()
    world.payments.batch_fails = True
    assert world.batch() == ["invoiced", "invoiced"]
    assert BOB in world.payments.card_reads and ADA in world.payments.card_reads
    assert world.email_of(BOB)["card"] is None and world.status_of(BOB) is InvoiceStatus.UNPAID
    assert world.email_of(ADA)["card"] == VISA and world.status_of(ADA) is InvoiceStatus.PAID
