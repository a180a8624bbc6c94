"""Factories for invoicing tests: enrolled accounts with servers whose usage is known exactly."""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from local.events import LambdaContext
from local.stack import SOLUSVM_TOKEN, LocalStack
from postpay.adapters.tables import AccountItem, CounterItem, InvoiceItem
from postpay.errors import AccountExists

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def enrolled_account(
    stack: LocalStack,
    functions: dict[str, Any],
    *,
    servers: list[dict] | None = None,
    enrolled_at: datetime = LONG_AGO,
) -> AccountItem:
    """An enrolled account (made the way verification makes one) with SolusVM servers seeded as given.

    Each server: {"plan_id", "created_at", "deleted_at"?, "name"?} (ISO times)."""
    email = f"bill-{uuid.uuid4().hex[:12]}@example.com"
    container = functions["verify"].container
    client_id = container.counters.next_value("client_id")
    user = requests.post(
        f"{stack.emulator.url}users",
        json={"email": email, "password": "x" * 16, "status": "active", "billing_user_id": client_id},
        headers={"Authorization": f"Bearer {SOLUSVM_TOKEN}"},
        timeout=5,
    ).json()["data"]
    item = AccountItem(
        email,
        client_id=client_id,
        name="Bill Payer",
        company="",
        password_hash="x",
        status="enrolled",
        created_at=enrolled_at,
        verified_at=enrolled_at,
        enrolled_at=enrolled_at,
        solus_user_id=user["id"],
    )
    try:
        item.save(condition=AccountItem.email.does_not_exist())
    except Exception as error:  # pragma: no cover - uuid collision
        raise AccountExists(email) from error
    seed_servers(stack, user["id"], servers or [])
    return AccountItem.get(email)


def seed_servers(stack: Any, user_id: int, servers: list[dict]) -> None:
    """Gives a SolusVM user these servers in the emulator (see enrolled_account for their shape)."""
    for server in servers:
        requests.post(
            f"{stack.emulator.root}/_emulator/servers", json={"user_id": user_id, **server}, timeout=5
        ).raise_for_status()


def invoke(functions: dict[str, Any], payload: dict) -> dict:
    return functions["automation"].handler(payload, LambdaContext(function_name="automation"))


def drain(poller: Any, *, rounds: int = 50) -> None:
    """Processes the queue until it stays empty (retries come back after the visibility timeout)."""
    empty = 0
    for _ in range(rounds):
        if poller.poll_once() == 0:
            time.sleep(1)  # failed jobs come back after the one-second visibility timeout
            empty += 1
            if empty >= 2:
                return
        else:
            empty = 0


def invoices_of(client_id: int) -> list[InvoiceItem]:
    return [i for i in InvoiceItem.by_client.query(client_id) if i.outcome == "invoiced"]


def counter() -> int:
    try:
        return int(CounterItem.get("invoice_number").value)
    except CounterItem.DoesNotExist:
        return 0


def all_invoice_numbers() -> list[int]:
    return sorted(int(re.sub(r"\D", "", i.number)) for i in InvoiceItem.scan() if i.outcome == "invoiced")


def invoice_mails(stack: LocalStack, email: str) -> list[Any]:
    return [m for m in stack.mails_to(email) if m.subject.startswith("Invoice")]


class ShiftedClock:
    def __init__(self, delta: timedelta) -> None:
        self.delta = delta

    def now(self) -> datetime:
        return datetime.now(UTC) + self.delta


def receive_all(stack: LocalStack) -> list[dict]:
    import boto3

    sqs = boto3.client("sqs")
    messages: list[dict] = []
    for _ in range(500):  # until the queue is empty: the shared stack's runs queue a job per account it holds
        batch = sqs.receive_message(
            QueueUrl=os.environ["INVOICE_QUEUE_URL"],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=60,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages


def logged_in(browser: Any, email: str) -> None:
    """Gives the enrolled account ``email`` the tests' password and logs ``browser`` in as it."""
    from postpay.security import hash_password
    from tests.integration.conftest import PASSWORD

    AccountItem(email).update(actions=[AccountItem.password_hash.set(hash_password(PASSWORD))])
    form = browser.get("/login")
    assert browser.post("/login", {"email": email, "password": PASSWORD}, csrf_from=form).status == 303
