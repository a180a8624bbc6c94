"""A local API Gateway: browser HTTP in, REST API proxy events to the real handlers, their answers out.

Also serves the local-only pages: /_local/mail (every email sent through SES) and /_local/terms/*.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.events import LambdaContext, load_function, rest_event
from local.stack import LocalStack
from postpay.routes import function_for

MAX_BODY = 10 * 1024 * 1024  # API Gateway's own payload limit


class Gateway:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self._lock = threading.Lock()

    def call(self, name: str, event: dict) -> dict:
        # One invocation at a time, as in one Lambda execution environment: Powertools' resolver keeps
        # the current event on a class attribute, so two threads must never run handlers at once.
        with self._lock:
            return load_function(name).handler(event, LambdaContext(function_name=name))

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_local/"):
            if request.method not in ("GET", "HEAD"):
                response = Response("Method Not Allowed", status=405, headers={"Allow": "GET, HEAD"})
                return _refusing_body(environ, response)(environ, start_response)
            return self.local_page(request)(environ, start_response)
        if (request.content_length or 0) > MAX_BODY:
            return _refusing_body(environ, Response("Request Entity Too Large", status=413))(
                environ, start_response
            )
        return self.invoke(request)(environ, start_response)

    def invoke(self, request: Request) -> Response:
        headers = {key: value for key, value in request.headers.items()}
        event = rest_event(
            request.method,
            request.path,
            headers=headers,
            query=request.query_string.decode("latin-1"),
            body=request.get_data(cache=False) or None,
            source_ip=request.remote_addr or "127.0.0.1",
        )
        name = function_for(request.path)
        result = self.call(name, event)
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
        response = Response(data, status=result["statusCode"])
        response.headers.clear()
        for key, value in (result.get("headers") or {}).items():
            response.headers[key] = value
        for key, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(key, value)
        return response

    def local_page(self, request: Request) -> Response:
        if request.path == "/_local/mail":
            return Response(mailbox_page(self.stack.mails()), content_type="text/html; charset=utf-8")
        if request.path.startswith("/_local/terms/"):
            name = escape(request.path.rsplit("/", 1)[-1])
            return Response(
                "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                "<title>Terms</title></head>"
                f"<body><main><h1>Local terms: {name}</h1><p>Sample text.</p></main></body></html>",
                content_type="text/html; charset=utf-8",
            )
        return Response("Not found", status=404)


# The mailbox reads like the site: one <main>, a phone's width, and each email's own body only (its <html>,
# <head> and <body> would otherwise be merged into the page's). A long link in an email wraps, as a mail app
# wraps it; an email wider than the screen (the invoice's table of lines) scrolls in its own box, which can
# take the keyboard's focus to scroll, instead of widening the page.
MAILBOX_STYLE = (
    "body{font-family:system-ui,sans-serif;color:#1c2430;max-width:48rem;margin:0 auto;padding:1rem}"
    "article{border-top:1px solid #c8ced8;margin-top:1.5rem}"
    ".mail{overflow-wrap:break-word;overflow-x:auto}.mail img{max-width:100%;height:auto}"
)
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)


def mailbox_page(mails: Iterable[Any]) -> str:
    items = []
    newest_first = list(mails)[::-1]
    for n, mail in enumerate(newest_first, start=1):
        attached = "".join(
            f"<li>{escape(name)} ({len(data):,} bytes)</li>" for name, data in mail.attachments.items()
        )
        items.append(
            f"<article><h2>{escape(mail.subject)}</h2><p>To: {escape(', '.join(mail.to))} · "
            f"From: {escape(mail.source)}</p><div class='mail' role='region' tabindex='0' "
            f"aria-label='Email {n} of {len(newest_first)}: {escape(mail.subject)}'>"
            f"{email_body(mail.html)}</div>"
            + (f"<p>Attached:</p><ul class='attachments'>{attached}</ul>" if attached else "")
            + "</article>"
        )
    body = "".join(items) or "<p>No email sent yet.</p>"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>Local mailbox</title>"
        f"<style>{MAILBOX_STYLE}</style></head><body><main><h1>Local mailbox</h1>"
        "<p>Every email the product sent through SES (moto), newest first.</p>"
        + body
        + "</main></body></html>"
    )


def email_body(html: str) -> str:
    """What is inside an email's <body> (the whole text when it has none)."""
    found = _BODY.search(html)
    return found.group(1) if found else html


def _refusing_body(environ: dict, response: Response) -> Response:
    """An answer sent without reading the body, then the connection closed: werkzeug would otherwise wait
    for the rest of a large body (it drains what the application left unread) and the client hangs."""
    raw = environ.get("werkzeug.socket")
    if raw is not None:
        with contextlib.suppress(OSError):  # the client may be gone already
            raw.shutdown(socket.SHUT_RD)  # writing the answer still works; reading ends here
    return response


def serve(stack: LocalStack, port: int, host: str = "127.0.0.1") -> Any:
    server = make_server(host, port, Gateway(stack), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server
