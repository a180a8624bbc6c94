"""local/moto_patches.py: moto's TransactWriteItems backs each table up once, and still restores it
whole; moto keeps no model object a request made once it is answered."""

from __future__ import annotations

import copy
import gc
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table


@pytest.fixture
def table(stack):
    client = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name="us-east-1")
    name = f"moto-patch-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(50):
        client.put_item(TableName=name, Item={"pk": {"S": f"old-{n}"}, "n": {"N": str(n)}})
    yield client, name
    client.delete_table(TableName=name)


def _put(name: str, key: str) -> dict:
    return {"Put": {"TableName": name, "Item": {"pk": {"S": key}}}}


def test_a_transaction_of_many_items_copies_its_table_once(table, monkeypatch):
    client, name = table
    real, tables_copied = copy.deepcopy, []

    def counting(obj, memo=None):
        if isinstance(obj, Table):
            tables_copied.append(obj.name)
        return real(obj, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    client.transact_write_items(TransactItems=[_put(name, f"new-{n}") for n in range(40)])
    assert tables_copied == [name]  # moto alone: 40 copies of the table
    assert client.get_item(TableName=name, Key={"pk": {"S": "new-39"}})["Item"]


def test_a_cancelled_transaction_still_leaves_the_table_as_it_was(table):
    client, name = table
    with pytest.raises(ClientError) as error:
        client.transact_write_items(
            TransactItems=[
                _put(name, "written-then-undone"),
                {"Delete": {"TableName": name, "Key": {"pk": {"S": "old-1"}}}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": {"pk": {"S": "old-2"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert error.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "written-then-undone"}})
    assert client.get_item(TableName=name, Key={"pk": {"S": "old-1"}})["Item"]["n"] == {"N": "1"}
    assert client.scan(TableName=name, Select="COUNT")["Count"] == 50


def _live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def test_reads_and_transactions_leave_no_copies_of_items_or_tables_behind(table):
    client, name = table
    items, tables = _live(Item), _live(Table)
    for n in range(20):
        client.scan(TableName=name)  # 50 item copies each
        client.get_item(TableName=name, Key={"pk": {"S": f"old-{n}"}})
        client.transact_write_items(TransactItems=[_put(name, f"more-{n}")])  # a copy of the table each
    # moto alone kept every one: 20 x 50 scanned + 20 read + 20 tables of ~60 items (> 2,000 items, 20 tables)
    assert _live(Table) - tables <= 0
    assert _live(Item) - items <= 20  # the 20 items written, nothing else
