"""local/moto_patches.py: moto's TransactWriteItems backs each table up once, and still restores it whole."""

from __future__ import annotations

import copy
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
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
