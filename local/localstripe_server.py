"""localstripe (a stateful fake of Stripe's API, from PyPI) on 127.0.0.1, in a thread of this process.

Run in-process rather than as ``localstripe --port``: its command line listens on every interface and saves
its state to one shared /tmp file on every write, which parallel test runs on one machine would trample.
localstripe's application and store are module globals, bound to the first event loop that serves them: one
LocalStripe per process. ``python -m local.localstripe_server [port]`` runs one in a process of its own
(it prints its URL), for a process that already has one or must not keep its state.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import Any


class LocalStripe:
    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._ready = threading.Event()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def js_url(self) -> str:
        """The mock Stripe.js it serves in place of https://js.stripe.com/v3/."""
        return f"{self.url}/js.stripe.com/v3/"

    def start(self) -> LocalStripe:
        from localstripe import resources

        # in memory only: never the shared /tmp/localstripe.pickle
        resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
        thread = threading.Thread(target=self._serve, daemon=True, name="localstripe")
        thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("localstripe did not start")
        return self

    def _serve(self) -> None:
        from aiohttp import web
        from localstripe.server import app

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, self.sock).start())
        self._ready.set()
        self._loop.run_forever()

    def register_webhook(self, url: str, secret: str) -> None:
        import requests

        response = requests.post(
            f"{self.url}/_config/webhooks/postpay", data={"url": url, "secret": secret}, timeout=5
        )
        response.raise_for_status()

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


def main() -> None:
    server = LocalStripe(int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(server.url, flush=True)
    threading.Event().wait()  # until the process is stopped


if __name__ == "__main__":
    main()
