"""One fix to moto's DynamoDB, applied wherever this repository runs moto server (``make run``, the tests, the
bench).

moto 5's ``transact_write_items`` backs up a table before applying a transaction by deep-copying it once per
*item* of the transaction, not once per table (``original_table_state[name] = copy.deepcopy(table)`` inside
the loop over items): a 100-item batch copied the invoices table 100 times, all but one copy thrown away. On
the shared test stack that was most of moto's CPU and, since a table's copy holds reference cycles that only
the cyclic collector frees, gigabytes of garbage at a time (a full test run reached 13-19 GB and was OOM-
killed).

The loop copies every table before it applies any operation, so every copy of one table in one call is the
same snapshot: the first copy is kept and handed back for the others. Behaviour is unchanged, including the
restore on a cancelled transaction. Checked by tests/integration/test_local_moto.py against the moto version
this repository locks; remove when moto copies each table once.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_state = threading.local()


class _CopyOncePerTable:
    """Stands in for the ``copy`` module inside moto.dynamodb.models: while a transaction is being applied,
    ``deepcopy`` of a Table returns that call's first copy of it; everything else is the real ``copy``."""

    def __init__(self, table_type: type) -> None:
        self.table_type = table_type  # moto's Table, imported once: every item write deep-copies through here

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, obj: Any, memo: Any = None) -> Any:
        copies = getattr(_state, "copies", None)
        if copies is None or not isinstance(obj, self.table_type):
            return copy.deepcopy(obj, memo)
        if id(obj) not in copies:
            copies[id(obj)] = copy.deepcopy(obj, memo)
        return copies[id(obj)]


def apply() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    original = backend.transact_write_items
    if getattr(original, "copies_once", False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _state.copies = {}
        try:
            return original(self, transact_items)
        finally:
            _state.copies = None

    transact_write_items.copies_once = True  # type: ignore[attr-defined]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.copy = _CopyOncePerTable(Table)  # type: ignore[assignment]
