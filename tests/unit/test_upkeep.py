"""The daily upkeep against in-memory ports: overdue clients suspended once, only by us; lifted when paid."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from postpay.billing.upkeep import Upkeep
from postpay.models import SolusUser
from postpay.services.provisioning import Provisioner
from tests.unit.test_invoicing_jobs import OCTOBER, USER, World


class Upkept(World):
    def __init__(self) -> None:
        super().__init__()
        self.solus.users[USER] = SolusUser(
            id=USER, email="ada@example.com", status="active", billing_user_id=7
        )
        provisioner = Provisioner(
            settings=self.settings,
            accounts=self.accounts,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
        )
        self.upkeep = Upkeep(
            settings=self.settings,
            accounts=self.accounts,
            billing=self.billing,
            solus=self.solus,
            provisioner=provisioner,
            mailer=self.mailer,
            clock=self.clock,
        )
        self.deliver(self.run())  # October invoiced, due per DUE_DAYS
        self.invoice = self.billing.billed(7, OCTOBER.key)[1]

    def day_after_grace(self) -> date:
        return self.invoice.due_on + timedelta(days=self.settings.grace_days + 1)


@pytest.fixture
def world() -> Upkept:
    return Upkept()


def test_an_overdue_client_is_suspended_once_and_told(world):
    day = world.day_after_grace()
    first = world.upkeep.run(day)
    again = world.upkeep.run(day + timedelta(days=1))
    assert first.suspended == [world.invoice.number] and again.suspended == []
    assert world.solus.users[USER].status == "suspended"
    assert world.accounts.get_account("ada@example.com").suspended_for == world.invoice.number
    assert [m.template for m in world.mailer.sent].count("suspended") == 1


def test_nothing_happens_within_the_grace_days(world):
    assert world.upkeep.run(world.invoice.due_on + timedelta(days=world.settings.grace_days)).suspended == []
    assert world.solus.users[USER].status == "active"


def test_a_user_someone_else_suspended_is_left_alone_and_never_lifted(world):
    world.solus.users[USER] = SolusUser(id=USER, email="ada@example.com", status="locked", billing_user_id=7)
    world.upkeep.run(world.day_after_grace())
    assert world.solus.users[USER].status == "locked"
    assert world.accounts.get_account("ada@example.com").suspended_for is None


def test_paying_lifts_the_suspension_at_the_next_upkeep(world):
    day = world.day_after_grace()
    world.upkeep.run(day)
    world.billing.mark_paid(world.invoice.number, "bank", world.clock.now())
    summary = world.upkeep.run(day + timedelta(days=1))
    assert summary.reactivated == [world.invoice.number]
    assert world.solus.users[USER].status == "active"
    assert world.accounts.get_account("ada@example.com").suspended_for is None


def test_solusvm_down_leaves_the_suspension_for_the_next_day(world):
    day = world.day_after_grace()
    world.solus.down = True
    summary = world.upkeep.run(day)
    assert summary.errors and world.accounts.get_account("ada@example.com").suspended_for is None
    world.solus.down = False
    assert world.upkeep.run(day + timedelta(days=1)).suspended == [world.invoice.number]
