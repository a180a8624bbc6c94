"""A test client that behaves like a browser towards a handler: cookies, forms, CSRF, REST API events."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import urlencode, urlsplit

from local.events import LambdaContext, rest_event
from postpay.routes import function_for

Handler = Callable[[dict, Any], dict]
# (method, absolute URL, headers, body, source IP) -> the proxy integration's answer, as a gateway would
Gateway = Callable[[str, str, dict[str, str], bytes | None, str], dict]


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str
    raw: bytes = b""  # a binary answer (a PDF), decoded from the event's base64

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def field(self, name: str) -> str:
        match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', self.body)
        assert match, f"no field {name!r} on the page"
        return unescape(match.group(1))

    def has(self, text: str) -> bool:
        return text in unescape(self.body)


@dataclass
class Browser:
    handlers: dict[str, Handler]
    origin: str = "http://localhost:8080"
    source_ip: str = "203.0.113.10"
    user_agent: str = "pytest-browser/1.0"
    jar: dict[str, str] = field(default_factory=dict)
    # Set, it receives every request instead of ``handlers`` (tests/infra/rehearsal.py: API Gateway as
    # deployed, from the synthesized template).
    gateway: Gateway | None = None

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Page:
        parts = urlsplit(url)
        sent = {"User-Agent": self.user_agent, "Host": urlsplit(self.origin).netloc, **(headers or {})}
        if self.jar:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        if self.gateway is not None:
            absolute = url if parts.scheme else self.origin + url
            result = self.gateway(method, absolute, sent, body, self.source_ip)
        else:
            event = rest_event(
                method,
                parts.path or "/",
                headers=sent,
                query=parts.query,
                body=body,
                source_ip=self.source_ip,
            )
            name = function_for(parts.path or "/")
            result = self.handlers[name](event, LambdaContext(function_name=name))
        headers_out = dict(result.get("headers") or {})
        for key, values in (result.get("multiValueHeaders") or {}).items():
            if key != "Set-Cookie":
                headers_out[key] = values[-1]
        cookies = list((result.get("multiValueHeaders") or {}).get("Set-Cookie", []))
        for raw in cookies:
            pair = raw.split(";", 1)[0]
            key, _, value = pair.partition("=")
            if "Max-Age=0" in raw or not value:
                self.jar.pop(key, None)
            else:
                self.jar[key] = value
        answer: str = result.get("body") or ""
        if result.get("isBase64Encoded"):
            return Page(result["statusCode"], headers_out, cookies, "", base64.b64decode(answer))
        return Page(result["statusCode"], headers_out, cookies, answer)

    def get(self, url: str) -> Page:
        return self.request("GET", url)

    def post(
        self,
        url: str,
        fields: dict[str, str],
        *,
        csrf_from: Page | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Page:
        data = dict(fields)
        if csrf_from is not None:
            data.setdefault("csrf_token", csrf_from.field("csrf_token"))
        body = raw if raw is not None else urlencode(data).encode("utf-8")
        sent = {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin, **(headers or {})}
        return self.request("POST", url, body=body, headers=sent)

    def submit(self, page_url: str, action: str, fields: dict[str, str]) -> Page:
        """GET the form page (for its CSRF token and cookie), then POST the form like a person would."""
        form = self.get(page_url)
        return self.post(action, fields, csrf_from=form)
