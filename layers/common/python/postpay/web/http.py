"""Reading a browser's request out of an API Gateway REST proxy event, strictly.

Bad input never reaches the logic: a body too large, not UTF-8, of the wrong content type, or with a
field sent twice is refused here with a 4xx and a message the user can act on.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

MAX_BODY_BYTES = 16 * 1024
MAX_FIELDS = 20
FORM_TYPE = "application/x-www-form-urlencoded"


class HttpError(Exception):
    """A request refused with a status and a message for the person who sent it."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(f"{status} {title}: {message}")
        self.status = status
        self.title = title
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    cookies: dict[str, str]
    body: bytes
    source_ip: str
    user_agent: str
    set_cookies: list[Any] = field(default_factory=list)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Request:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if v is not None}
        multi = event.get("multiValueQueryStringParameters") or {}
        single = event.get("queryStringParameters") or {}
        query = {k: list(v) for k, v in multi.items()} or {k: [v] for k, v in single.items()}
        identity = (event.get("requestContext") or {}).get("identity") or {}
        return cls(
            method=str(event.get("httpMethod", "GET")).upper(),
            path=str(event.get("path", "/")),
            headers=headers,
            query=query,
            cookies=_cookies(headers.get("cookie", "")),
            body=_body(event),
            source_ip=str(identity.get("sourceIp") or "unknown"),
            user_agent=str(headers.get("user-agent", ""))[:512],
        )

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name) or []
        if len(values) > 1:
            raise HttpError(400, "Bad request", f"The link has the parameter {name!r} more than once.")
        return values[0] if values else None

    def form(self) -> dict[str, str]:
        """The form fields of a POST; every rule of a well-formed browser form submission enforced."""
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            raise HttpError(415, "Unsupported content type", "Send the form as a web browser does.")
        if len(self.body) > MAX_BODY_BYTES:
            raise HttpError(
                413, "Request too large", "The form is larger than 16 KB. Shorten what you typed."
            )
        try:
            text = self.body.decode("utf-8")
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                strict_parsing=False,
                encoding="utf-8",
                errors="strict",
                max_num_fields=MAX_FIELDS,
            )
        except UnicodeDecodeError as error:
            raise HttpError(400, "Bad request", "The form is not valid UTF-8 text.") from error
        except ValueError as error:
            raise HttpError(400, "Bad request", "The form has too many fields.") from error
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name in fields:
                raise HttpError(400, "Bad request", f"The field {name!r} was sent more than once.")
            if "\x00" in value:
                raise HttpError(400, "Bad request", f"The field {name!r} contains a NUL character.")
            fields[name] = value
        return fields


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise HttpError(400, "Bad request", "The request body is not valid.") from error
    return str(raw).encode("utf-8", errors="surrogateescape")


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}
