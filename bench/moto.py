"""moto server for the benches, in its own process: the local stack's, one request at a time (see
local.stack.MotoServer), so a transaction stays atomic as in DynamoDB.

moto makes a transaction undoable by deep-copying every table it touches, which costs far more than the
transaction itself once a table holds a few hundred invoices (~0.2 s here) and would make moto, not the
product, the bench's bottleneck. Here the undo copy is shallow: each item is copied with its own attribute
map, which is what a put, a delete or an update replaces (moto never changes an attribute value in place),
so a cancelled transaction still leaves every item as it was. The map is copied as a plain dict's copy: moto's
map re-sums the item's size at every key set (each item's copy cost O(attributes²), 70% of this server's CPU).

moto's SQS reads the clock through ``datetime`` (so that freezegun can stop it) twice per message per
``ReceiveMessage``, for every message of the queue: here it reads ``time.time()``, the same clock without the
detour (the bench freezes no time).

    python -m bench.moto PORT
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from typing import Any

from local.stack import MotoServer


def _item(item: Any) -> Any:
    clone = copy.copy(item)
    kind: Any = type(item.attrs)
    attrs = kind.__new__(kind)
    dict.update(attrs, item.attrs)  # not the map's own update: it checks the item's size at every key
    clone.attrs = attrs
    return clone


def _unix_time(dt: Any = None) -> float:
    if dt is None:
        return time.time()
    from moto.core.utils import unix_time

    return unix_time(dt)


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


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
    """The undo copy, once per table per transaction (local.moto_patches). After ``moto_patches.apply()``,
    which MotoServer calls: applied before it, it was replaced by the patches' deep copy."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    from local.moto_patches import _CopyOncePerTable

    models.copy = _CopyOncePerTable(Table, backup=undo_copy)  # type: ignore[assignment]

    import moto.sqs.models as sqs

    sqs.unix_time = _unix_time  # type: ignore[assignment]
    sqs.unix_time_millis = _unix_time_millis  # type: ignore[assignment]


class Profile:
    """``BENCH_MOTO_PROFILE=<file>``: moto's CPU and wall time per operation (the X-Amz-Target, or the
    path), written as JSON to ``<file>.<pid>`` when the process is terminated; with ``BENCH_MOTO_CPROFILE=1``
    also a cProfile of its request handling (``<file>.<pid>.prof``, which inflates the times). Requests are
    handled one at a time (MotoServer's lock), so one profiler sees them all."""

    def __init__(self, path: str, *, cprofile: bool) -> None:
        import cProfile
        import os

        self.path = f"{path}.{os.getpid()}"
        self.profiler = cProfile.Profile(time.process_time) if cprofile else None
        self.operations: dict[str, list[float]] = {}  # name -> [count, cpu seconds, wall seconds]

    def wrap(self, app: Any) -> Any:
        def profiled(environ: dict, start_response: Any) -> Any:
            target = environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "")[:30]
            cpu, wall = time.thread_time(), time.perf_counter()
            if self.profiler is not None:
                self.profiler.enable()
            try:
                return list(app(environ, start_response))
            finally:
                if self.profiler is not None:
                    self.profiler.disable()
                figures = self.operations.setdefault(target, [0, 0.0, 0.0])
                figures[0] += 1
                figures[1] += time.thread_time() - cpu
                figures[2] += time.perf_counter() - wall

        return profiled

    def write(self, *_: Any) -> None:
        import json

        if self.profiler is not None:
            self.profiler.dump_stats(self.path + ".prof")
        with open(self.path, "w") as out:
            json.dump(
                {
                    k: {"count": c, "cpuMs": round(u * 1000, 1), "wallMs": round(w * 1000, 1)}
                    for k, (c, u, w) in sorted(self.operations.items(), key=lambda kv: -kv[1][1])
                },
                out,
                indent=1,
            )
        sys.exit(0)


def main() -> None:
    import os
    import signal

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoServer(int(sys.argv[1]), keep_alive=True)
    install()
    if os.environ.get("BENCH_MOTO_PROFILE"):
        from moto.moto_server import werkzeug_app

        profile = Profile(
            os.environ["BENCH_MOTO_PROFILE"], cprofile=bool(os.environ.get("BENCH_MOTO_CPROFILE"))
        )
        original = werkzeug_app.DomainDispatcherApplication.__call__

        def profiled(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
            return profile.wrap(lambda e, s: original(self, e, s))(environ, start_response)

        werkzeug_app.DomainDispatcherApplication.__call__ = profiled  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, profile.write)
    server.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
