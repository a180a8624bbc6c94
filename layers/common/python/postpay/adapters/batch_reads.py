"""DynamoDB reads of a worker's batch that span aggregates in one request: a BatchGetItem may read several
tables at once, and on the invoicing run's busiest path one request per batch is worth a module."""

from __future__ import annotations

import time
from typing import Any

from postpay.adapters.accounts_store import _to_account
from postpay.adapters.billing_store import INVOICE_COUNTER, BillingStore
from postpay.adapters.tables import AccountItem, CounterItem, PaymentItem, connection
from postpay.models import Account

_BATCH_GET_MAX = 100  # keys per BatchGetItem request, all tables together
_UNPROCESSED_TRIES = 5


def buyers_with_cards(emails: list[str], client_ids: list[int]) -> tuple[dict[str, Account], set[int]]:
    """A worker's batch in one BatchGetItem per 100 keys, over three tables: the accounts of these emails (by
    email, missing ones left out), which of these clients have a card on file (card payments configured),
    and the invoice counter. Instead of one read of each table: one request per batch less, on the invoicing
    run's busiest path. The counter, read milliseconds before the batch's transaction, is that transaction's
    first guess of the next number (BillingStore's hint): this environment's own last number is stale
    whenever other workers issued invoices since, and a stale guess costs a cancelled transaction."""
    accounts, cards, counters = (
        AccountItem.Meta.table_name,
        PaymentItem.Meta.table_name,
        CounterItem.Meta.table_name,
    )
    keys = [
        (counters, {"name": {"S": INVOICE_COUNTER}}),
        *((accounts, {"email": {"S": email}}) for email in dict.fromkeys(emails)),
        *((cards, {"pk": {"S": f"card#{client_id}"}}) for client_id in dict.fromkeys(client_ids)),
    ]
    found: dict[str, Account] = {}
    with_card: set[int] = set()
    client: Any = connection().client
    for start in range(0, len(keys), _BATCH_GET_MAX):
        request: dict[str, dict] = {}
        for table, key in keys[start : start + _BATCH_GET_MAX]:
            request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
        if cards in request:
            request[cards]["ProjectionExpression"] = "pk, payment_method"
        for attempt in range(_UNPROCESSED_TRIES):
            answer = client.batch_get_item(RequestItems=request)
            for raw in answer.get("Responses", {}).get(accounts, []):
                item = AccountItem.from_raw_data(raw)
                found[item.email] = _to_account(item)
            for raw in answer.get("Responses", {}).get(cards, []):
                if raw.get("payment_method", {}).get("S"):
                    with_card.add(int(raw["pk"]["S"].removeprefix("card#")))
            for raw in answer.get("Responses", {}).get(counters, []):
                BillingStore.note_counter(int(raw.get("value", {}).get("N", "0")))
            request = answer.get("UnprocessedKeys") or {}
            if not request or attempt == _UNPROCESSED_TRIES - 1:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))  # DynamoDB's advice: back off before the rest
        if request:
            raise RuntimeError(f"DynamoDB left {sum(len(r['Keys']) for r in request.values())} keys unread")
    return found, with_card
