"""Two fixes to moto's memory, applied wherever this repository runs moto server (``make run``, the tests, the
bench).

**Every model object moto ever creates is kept.** moto's ``BaseModel.__new__`` appends each new instance to
its class's ``instances_tracked`` list (for the ``/moto-api/data.json`` dashboard and S3's reset), and nothing
ever removes one until a reset. DynamoDB creates models on every read: each item a GetItem, Query or Scan
returns is a deep copy (an ``Item``), and each transaction backs its tables up (a ``Table`` with copies of all
its items). All of them stayed reachable: measured in the integration suite, 1.77 million ``Item`` objects and
4,810 copies of tables after a third of it, ~90 MB more per test that invoices the shared stack's accounts,
until the process was OOM-killed at 18-20 GB. ``apply()`` makes ``BaseModel.__new__`` stop tracking; nothing
here uses the dashboard, and S3's reset still disposes of every key its buckets hold (an overwritten key is
freed by the collector instead). Checked by tests/integration/test_local_moto.py (a read leaves no object
behind).

**A transaction copies a table once per item.**

moto 5's ``transact_write_items`` backs up a table before applying a transaction by deep-copying it once per
*item* of the transaction, not once per table (``original_table_state[name] = copy.deepcopy(table)`` inside
the loop over items): a 100-item batch copied the invoices table 100 times, all but one copy thrown away. On
the shared test stack that was most of moto's CPU (and, tracked as above, every copy was kept).

The loop copies every table before it applies any operation, so every copy of one table in one call is the
same snapshot: the first copy is kept and handed back for the others. Behaviour is unchanged, including the
restore on a cancelled transaction. Checked by tests/integration/test_local_moto.py against the moto version
this repository locks; remove when moto copies each table once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

_state = threading.local()


class _CopyOncePerTable:
    """Stands in for the ``copy`` module inside moto.dynamodb.models: while a transaction is being applied,
    ``deepcopy`` of a Table returns that call's first copy of it; everything else is the real ``copy``."""

    def __init__(self, table_type: type, backup: Callable[[Any], Any] | None = None) -> None:
        self.table_type = table_type  # moto's Table, imported once: every item write deep-copies through here
        self.backup = backup  # how a table is copied: None, a deep copy (the bench's moto copies less)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, obj: Any, memo: Any = None) -> Any:
        copies = getattr(_state, "copies", None)
        if copies is None or not isinstance(obj, self.table_type):
            return copy.deepcopy(obj, memo)
        if id(obj) not in copies:
            copies[id(obj)] = self.backup(obj) if self.backup is not None else copy.deepcopy(obj, memo)
        return copies[id(obj)]


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """moto's ``BaseModel.__new__`` without the append to ``cls.instances_tracked`` (see the module doc)."""
    return object.__new__(cls)


def apply() -> None:
    from moto.core.common_models import BaseModel
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    BaseModel.__new__ = staticmethod(_untracked_new)  # type: ignore[assignment]

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
