"""DynamoDB tables, created from the same PynamoDB models the code uses (postpay.adapters.tables).

Table names are ``postpay-<stage>-<stack>-<table>``, where ``<stack>`` is the first part of the stack's
own id (a UUID CloudFormation draws when the stack is created). Tables are retained and protected from
deletion, so a first deploy that fails leaves its (empty) tables behind; the retry is a new stack with a
new id, so its tables never collide with them. Updates keep the stack id, hence the names.
"""

from __future__ import annotations

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from postpay.adapters.tables import TableSpec, table_specs

_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {"ALL": dynamodb.ProjectionType.ALL, "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY}


def _key(spec: list[dict], definitions: dict[str, str], kind: str) -> dynamodb.Attribute | None:
    for element in spec:
        if element["KeyType"] == kind:
            name = element["AttributeName"]
            return dynamodb.Attribute(name=name, type=_TYPES[definitions[name]])
    return None


def stack_table_prefix(stage: str) -> str:
    """``postpay-<stage>-<first 8 hex digits of the stack id>-``, resolved by CloudFormation."""
    stack_uuid = Fn.select(2, Fn.split("/", Aws.STACK_ID))
    return Fn.join("", [f"postpay-{stage}-", Fn.select(0, Fn.split("-", stack_uuid)), "-"])


class Data(Construct):
    """Every table: on demand, point-in-time recovery, deletion protection, encrypted, retained, TTL."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str) -> None:
        super().__init__(scope, construct_id)
        self.table_prefix = stack_table_prefix(stage)
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in table_specs():
            self.tables[spec.logical_name] = self._table(spec, self.table_prefix)

    def _table(self, spec: TableSpec, prefix: str) -> dynamodb.Table:
        schema = spec.schema
        definitions = {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}
        partition = _key(schema["key_schema"], definitions, "HASH")
        assert partition is not None
        table = dynamodb.Table(
            self,
            spec.logical_name.title().replace("-", ""),
            table_name=prefix + spec.logical_name,
            partition_key=partition,
            sort_key=_key(schema["key_schema"], definitions, "RANGE"),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=spec.ttl_attribute,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in schema.get("global_secondary_indexes", []):
            index_definitions = {
                d["AttributeName"]: d["AttributeType"] for d in index["attribute_definitions"]
            }
            index_partition = _key(index["key_schema"], index_definitions, "HASH")
            assert index_partition is not None
            table.add_global_secondary_index(
                index_name=index["index_name"],
                partition_key=index_partition,
                sort_key=_key(index["key_schema"], index_definitions, "RANGE"),
                projection_type=_PROJECTIONS[index["projection"]["ProjectionType"]],
            )
        return table
