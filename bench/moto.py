"""moto server for the benches, in its own process: the local stack's, one request at a time (see
local.stack.MotoServer), so a transaction stays atomic as in DynamoDB.

moto makes a transaction undoable by deep-copying every table it touches, which costs far more than the
transaction itself once a table holds a few hundred invoices (~0.2 s here) and would make moto, not the
product, the bench's bottleneck. Here the undo copy is shallow: each item is copied with its own attribute
map, which is what a put, a delete or an update replaces (moto never changes an attribute value in place),
so a cancelled transaction still leaves every item as it was.

    python -m bench.moto PORT
"""

from __future__ import annotations

import copy
import logging
import sys
import time
import types
from typing import Any

from local.stack import MotoServer


def _item(item: Any) -> Any:
    clone = copy.copy(item)
    clone.attrs = copy.copy(item.attrs)
    return clone


def undo_copy(table: Any) -> Any:
    """A copy of the table that restores every item when put back in the backend's place (anything but a
    table, such as the item an update reports, is deep-copied as moto does)."""
    from moto.dynamodb.models.table import Table

    if not isinstance(table, Table):
        return copy.deepcopy(table)
    clone = copy.copy(table)
    items = copy.copy(table.items)
    for key, value in list(items.items()):
        items[key] = {r: _item(i) for r, i in value.items()} if isinstance(value, dict) else _item(value)
    clone.items = items
    return clone


def install() -> None:
    import moto.dynamodb.models as models

    models.copy = types.SimpleNamespace(deepcopy=undo_copy)  # type: ignore[attr-defined,assignment]


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    install()
    MotoServer(int(sys.argv[1])).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
