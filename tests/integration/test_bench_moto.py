"""The bench's moto server (bench/moto.py) copies less than moto to undo a transaction and reads the clock
without datetime: it must still behave as moto does. A cancelled transaction leaves every item it touched as
it was, and a received message stays hidden for its visibility timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from bench.invoicing import start_moto


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    process, port = start_moto()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(service: str, endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def _counter_set(value: int, *, expected: int) -> dict:
    """A transaction's update of the counter item to ``value``, conditioned on it being ``expected``."""
    return {
        "Update": {
            "TableName": "things",
            "Key": {"id": {"S": "counter"}},
            "UpdateExpression": "SET #v = :next",
            "ConditionExpression": "#v = :expected",
            "ExpressionAttributeNames": {"#v": "value"},
            "ExpressionAttributeValues": {":next": {"N": str(value)}, ":expected": {"N": str(expected)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _items(db) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {item["id"]["S"]: item for item in db.scan(TableName="things", ConsistentRead=True)["Items"]}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(endpoint: str) -> None:
    db = _client("dynamodb", endpoint)
    db.create_table(
        TableName="things",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    db.put_item(TableName="things", Item={"id": {"S": "counter"}, "value": {"N": "7"}})
    db.put_item(TableName="things", Item={"id": {"S": "kept"}, "note": {"S": "before"}, "n": {"N": "1"}})
    with pytest.raises(ClientError) as cancelled:
        db.transact_write_items(
            TransactItems=[
                # applied first, then undone: an update in place, a new item, a replaced one
                {
                    "Update": {
                        "TableName": "things",
                        "Key": {"id": {"S": "kept"}},
                        "UpdateExpression": "SET note = :after REMOVE n",
                        "ExpressionAttributeValues": {":after": {"S": "after"}},
                    }
                },
                {"Put": {"TableName": "things", "Item": {"id": {"S": "new"}, "note": {"S": "x"}}}},
                _counter_set(9, expected=8),
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _items(db) == {
        "counter": {"id": {"S": "counter"}, "value": {"N": "7"}},
        "kept": {"id": {"S": "kept"}, "note": {"S": "before"}, "n": {"N": "1"}},
    }
    # and the same transaction with the right condition is applied whole
    db.transact_write_items(
        TransactItems=[
            _counter_set(8, expected=7),
            {"Put": {"TableName": "things", "Item": {"id": {"S": "new"}, "note": {"S": "x"}}}},
        ]
    )
    items = _items(db)
    assert items["counter"]["value"] == {"N": "8"} and "new" in items


def test_a_received_message_is_hidden_for_its_visibility_timeout(endpoint: str) -> None:
    sqs = _client("sqs", endpoint)
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"job {n}"} for n in range(3)]
    )
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=2)["Messages"]
    second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=2)["Messages"]
    assert len(first) == 2 and len(second) == 1
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    time.sleep(2.2)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert sorted(m["Body"] for m in again) == ["job 0", "job 1", "job 2"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "2" for m in again)
