"""Provisioning against in-memory ports: one SolusVM user per account, whatever fails in between."""

from __future__ import annotations

import pytest

from postpay.config import Settings
from postpay.errors import AlreadyProvisioning, SolusUnavailable
from postpay.models import Account, AccountStatus, SolusUser
from postpay.services.provisioning import LOCK_HOLD, Provisioner
from tests.unit.fakes import FakeAccounts, FakeMailer, FakeSolus, FixedClock
from tests.unit.test_config import BASE


class World:
    def __init__(self) -> None:
        self.settings = Settings.from_env(BASE)
        self.accounts, self.solus, self.mailer, self.clock = (
            FakeAccounts(),
            FakeSolus(),
            FakeMailer(),
            FixedClock(),
        )
        self.provisioner = Provisioner(
            settings=self.settings,
            accounts=self.accounts,
            solus=self.solus,
            mailer=self.mailer,
            clock=self.clock,
        )

    def verified(self, email: str = "ada@example.com", client_id: int = 7) -> Account:
        return self.accounts.add(
            Account(
                email=email,
                client_id=client_id,
                name="Ada",
                company="",
                password_hash="x",
                status=AccountStatus.VERIFIED,
                created_at=self.clock.now(),
                verified_at=self.clock.now(),
            )
        )


@pytest.fixture
def world() -> World:
    return World()


def test_provisioning_creates_the_solusvm_user_and_enrolls_the_account(world):
    world.verified()
    account = world.provisioner.provision("ada@example.com", notify_if_later=False)
    assert account.enrolled and world.solus.users[account.solus_user_id].billing_user_id == 7
    assert world.solus.calls == ["find_user_by_email", "create_user"]


def test_an_existing_solusvm_user_with_the_email_is_relinked_not_duplicated(world):
    # Given SolusVM already has a user with the address, linked to nothing
    world.solus.users[5] = SolusUser(id=5, email="ada@example.com", status="active", billing_user_id=None)
    world.verified()
    # When the account is provisioned
    account = world.provisioner.provision("ada@example.com", notify_if_later=False)
    # Then that user is linked to the client
    assert account.solus_user_id == 5 and world.solus.users[5].billing_user_id == 7
    assert len(world.solus.users) == 1


def test_a_creation_whose_answer_was_lost_is_relinked_on_the_next_attempt(world):
    # Given an attempt whose create_user answer was lost (the user exists, the account does not know it)
    world.verified()
    world.solus.lose_create_answer = True
    with pytest.raises(SolusUnavailable):
        world.provisioner.provision("ada@example.com", notify_if_later=True)
    assert world.accounts.get_account("ada@example.com").status is AccountStatus.VERIFIED
    # When the daily retry runs
    summary = world.provisioner.retry_pending()
    # Then the account is enrolled with that one user, and the client is told
    assert summary.enrolled == 1 and len(world.solus.users) == 1
    assert world.accounts.get_account("ada@example.com").enrolled
    assert world.mailer.to("ada@example.com") == ["enrolled"]


def test_solusvm_down_leaves_the_account_verified_with_its_reason(world):
    world.verified()
    world.solus.down = True
    with pytest.raises(SolusUnavailable):
        world.provisioner.provision("ada@example.com", notify_if_later=False)
    account = world.accounts.get_account("ada@example.com")
    assert account.status is AccountStatus.VERIFIED and "timed out" in (account.provisioning_error or "")
    assert world.provisioner.retry_pending().failed == {"ada@example.com": "find_user_by_email: timed out"}
    assert world.mailer.sent == []


def test_one_attempt_at_a_time_holds_the_lock(world):
    # Given another attempt holds the account's lock
    world.verified()
    assert world.accounts.lock_provisioning("ada@example.com", world.clock.now(), LOCK_HOLD)
    # When this one starts, it is refused without calling SolusVM
    with pytest.raises(AlreadyProvisioning):
        world.provisioner.provision("ada@example.com", notify_if_later=False)
    assert world.solus.calls == []
    # And once the lock has expired (its holder died), the account is provisioned
    world.clock.advance(seconds=LOCK_HOLD.total_seconds() + 1)
    assert world.provisioner.provision("ada@example.com", notify_if_later=False).enrolled


def test_provisioning_an_enrolled_account_again_changes_nothing(world):
    world.verified()
    first = world.provisioner.provision("ada@example.com", notify_if_later=False)
    again = world.provisioner.provision("ada@example.com", notify_if_later=False)
    assert again == first and len(world.solus.users) == 1
