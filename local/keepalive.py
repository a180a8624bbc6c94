"""HTTP/1.1 keep-alive for the local servers (moto, the SolusVM emulator), as AWS and any real panel keep
their connections open.

werkzeug's development server closes every connection after one answer (``Connection: close``: Python's
``http.server`` cannot find the next request line after a body the application left unread). Each request
then opens a new TCP connection, and the connect, the new connection's objects and its close are CPU the
client pays on every request: in the benches, the product's CPU, which on AWS it does not pay (botocore
and requests keep their connections in a pool). Here a request whose body has a length is read whole before
the application runs, so the next request line is always found, and the answer keeps the connection open;
anything else (a chunked or ``Expect: 100-continue`` request, an error) is answered as werkzeug does and
closes it.
"""

from __future__ import annotations

import io
import socket
import traceback
from typing import Any

from werkzeug.serving import WSGIRequestHandler


def keep_alive(base: type[WSGIRequestHandler] = WSGIRequestHandler) -> type[WSGIRequestHandler]:
    """A request handler class like ``base`` that keeps connections open."""

    class KeepAliveHandler(base):  # type: ignore[valid-type,misc]
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run_wsgi(self) -> None:
            length = self.headers.get("Content-Length")
            if (
                self.headers.get("Transfer-Encoding")
                or self.headers.get("Expect")
                or (length is not None and not length.strip().isdigit())
            ):
                super().run_wsgi()  # werkzeug's own answer, which closes the connection
                self.close_connection = True
                return
            body = self.rfile.read(int(length)) if length else b""
            self.environ = environ = self.make_environ()
            environ["wsgi.input"] = io.BytesIO(body)
            answer: dict[str, Any] = {}

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answer["status"], answer["headers"] = status, headers
                return lambda data: answer.setdefault("written", []).append(data)

            try:
                iterable = self.server.app(environ, start_response)
                try:
                    chunks = list(iterable)  # write() calls made meanwhile come before them (WSGI)
                    data = b"".join([*answer.get("written", []), *chunks])
                finally:
                    if hasattr(iterable, "close"):
                        iterable.close()
            except Exception:
                self.log_error("%s", traceback.format_exc())
                self.send_error(500)
                self.close_connection = True
                return
            code, _, message = answer["status"].partition(" ")
            self.send_response(int(code), message)
            for key, value in answer["headers"]:
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:  # the client asked to close (or spoke HTTP/1.0): it is told so
                self.send_header("Connection", "close")
            # the head and the body in one write: two make the client's delayed ACK hold the body ~40 ms
            self._headers_buffer.append(b"\r\n" + (data if environ["REQUEST_METHOD"] != "HEAD" else b""))
            self.flush_headers()

    return KeepAliveHandler
