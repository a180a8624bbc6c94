"""The registry of DynamoDB tables: one definition (the PynamoDB models) for code, stack and tests.

The CDK stack and the tests create tables from ``table_specs()``, so schema drift fails a test, not a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.connection import Connection
from pynamodb.models import Model


class Base(Model):
    """Each subclass declares its own ``Meta`` (PynamoDB would share one otherwise); ``bind`` names it."""

    logical_name = ""
    ttl_attribute: str | None = None


_connection: Connection | None = None


def connection() -> Connection:
    """One PynamoDB connection for transactions, created on first use: a botocore client is costly to
    build (tens of milliseconds) and safe to share between threads."""
    global _connection
    if _connection is None:
        _connection = Connection()
    return _connection


def models() -> list[type[Base]]:
    from postpay.adapters.billing_store import BILLING_TABLES
    from postpay.adapters.dynamo import ACCOUNT_TABLES

    return [*ACCOUNT_TABLES, *BILLING_TABLES]


def bind(table_prefix: str) -> None:
    """Point every model at its physical table."""
    for model in models():
        model.Meta.table_name = table_prefix + model.logical_name


@dataclass(frozen=True)
class TableSpec:
    logical_name: str
    schema: dict[str, Any]  # PynamoDB's schema: attribute_definitions, key_schema, global_secondary_indexes
    ttl_attribute: str | None


def table_specs() -> list[TableSpec]:
    """The schema of every table, from the models: what the stack deploys and the tests create."""
    return [TableSpec(m.logical_name, dict(m._get_schema()), m.ttl_attribute) for m in models()]


def create_tables(table_prefix: str) -> None:
    """Create every table (local stack and tests), with TTL enabled as the stack does."""
    bind(table_prefix)
    for model in models():
        if not model.exists():
            model.create_table(wait=True)
            if model.ttl_attribute:
                model._get_connection().connection.client.update_time_to_live(  # type: ignore[attr-defined]
                    TableName=model.Meta.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": model.ttl_attribute},
                )
