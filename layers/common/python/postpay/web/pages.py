"""Pages: rendering with the shared layout, security headers, CSRF, cookies and error pages.

CSRF: a signed-free double-submit token. A random value lives in a ``__Host-`` cookie (Secure, path /,
no domain: it cannot be planted from a sibling domain) and in a hidden field of every POST form; a POST
whose field does not match its cookie is refused. Requests whose Origin is another site are refused too.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from markupsafe import Markup

from postpay.config import Settings
from postpay.models import Seller
from postpay.observability import logger
from postpay.routes import matches
from postpay.security import same
from postpay.services.sessions import SESSION_COOKIE
from postpay.templating import render
from postpay.web.http import HttpError, Request

CSRF_COOKIE = "__Host-csrf"
CSRF_FIELD = "csrf_token"
CSRF_LENGTH = 43  # secrets.token_urlsafe(32)
HTML = "text/html; charset=utf-8"


@lru_cache(maxsize=1)
def stylesheet() -> tuple[Markup, str]:
    """The inline stylesheet and its CSP hash: no static route, no 'unsafe-inline'."""
    css = resources.files("postpay").joinpath("templates/style.css").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return Markup(css), f"'sha256-{digest}'"  # noqa: S704 - our own file, not user input


@lru_cache(maxsize=4)
def script(name: str) -> tuple[Markup, str]:
    """One of our page scripts, inlined, and its CSP hash: allowed only on the page that uses it."""
    js = resources.files("postpay").joinpath(f"templates/scripts/{name}").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return Markup(js), f"'sha256-{digest}'"  # noqa: S704 - our own file, not user input


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def stripe_headers(settings: Settings, script_hash: str) -> dict[str, str]:
    """The card pages' CSP: the site's own policy plus exactly what Stripe.js needs (its script, its
    frames, its API), per Stripe's published CSP list. Every other page keeps the closed policy."""
    _, style_hash = stylesheet()
    js = _origin(settings.stripe_js_url)
    api = _origin(settings.stripe_api_base or "https://api.stripe.com")
    frames = f"{js} https://hooks.stripe.com" if js == "https://js.stripe.com" else js
    return {
        **security_headers(settings),
        "Content-Security-Policy": (
            "default-src 'none'; "
            f"style-src {style_hash}; "
            f"script-src {js} {script_hash}; "
            f"connect-src {api}; "
            f"frame-src {frames}; "
            "img-src 'self' data: https://*.stripe.com; "
            "form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
    }


def security_headers(settings: Settings) -> dict[str, str]:
    _, style_hash = stylesheet()
    csp = (
        "default-src 'none'; "
        f"style-src {style_hash}; "
        "img-src 'self' data:; "
        f"form-action 'self' {settings.sso_origin}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def cookie(name: str, value: str, *, max_age: int | None = None) -> Cookie:
    return Cookie(
        name=name,
        value=value,
        path="/",
        secure=True,
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )


class Web:
    """Per-function page helper. Reads the current request from the resolver on every call."""

    def __init__(
        self,
        app: APIGatewayRestResolver,
        settings: Settings,
        routes: dict[str, set[str]],
        *,
        seller: Callable[[], Seller | None] | None = None,
        signed_in: Callable[[str | None], bool] | None = None,
    ) -> None:
        """``seller`` gives the footer's seller details; ``signed_in(session cookie)`` picks the navigation,
        so every page of a signed-in client, error pages included, shows the client's own navigation."""
        self.app = app
        self.settings = settings
        self.routes = routes
        self._seller = seller
        self._signed_in = signed_in
        app.exception_handler(HttpError)(self._http_error)
        app.not_found()(self._not_found)

    # request ---------------------------------------------------------------------------------------

    @property
    def request(self) -> Request:
        cached = self.app.context.get("request")
        if cached is None:
            cached = Request.from_event(self.app.current_event.raw_event)
            self.app.append_context(request=cached)
        return cached

    def csrf_token(self) -> str:
        """The browser's CSRF token, issuing one (and its cookie) on the first page it sees."""
        request = self.request
        token = request.cookies.get(CSRF_COOKIE, "")
        if len(token) == CSRF_LENGTH:
            return token
        issued = self.app.context.get("new_csrf")
        if issued is None:
            issued = secrets.token_urlsafe(32)
            self.app.append_context(new_csrf=issued)
            request.set_cookies.append(cookie(CSRF_COOKIE, issued))
        return issued

    def browser_binding(self) -> str:
        """A stable, non-secret fingerprint of this browser's CSRF cookie (its hash)."""
        return hashlib.sha256(self.csrf_token().encode("utf-8")).hexdigest()

    def form(self) -> dict[str, str]:
        """The POSTed form after the cross-site checks; the CSRF field is removed."""
        request = self.request
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != self.settings.public_origin:
            raise HttpError(403, "Forbidden", "This form was sent from another site.")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise HttpError(403, "Forbidden", "This form was sent from another site.")
        fields = request.form()
        sent = fields.pop(CSRF_FIELD, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        # A token of any other length is refused before any comparison.
        if len(sent) != CSRF_LENGTH or len(expected) != CSRF_LENGTH or not same(sent, expected):
            raise HttpError(
                403,
                "Your form expired",
                "For your security the form has expired. Go back, reload the page and try again.",
            )
        return fields

    def mark_signed_in(self, value: bool = True) -> None:
        """The handler knows (it just checked, started or ended the session): no second look-up."""
        self.app.append_context(signed_in=value)

    def is_signed_in(self) -> bool:
        known = self.app.context.get("signed_in")
        if known is None:
            known = False
            session = self.request.cookies.get(SESSION_COOKIE)
            if session and self._signed_in is not None:
                try:
                    known = self._signed_in(session)
                except Exception:  # the navigation never fails a page
                    logger.exception("session look-up for the navigation failed")
            self.mark_signed_in(known)
        return bool(known)

    def seller(self) -> Seller | None:
        return self._seller() if self._seller is not None else None

    # responses -------------------------------------------------------------------------------------

    def page(
        self, template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> Response:
        css, _ = stylesheet()
        context.setdefault("signed_in", self.is_signed_in())
        context.setdefault("seller", self.seller())
        body = render(
            f"pages/{template}",
            css=css,
            csrf_token=self.csrf_token(),
            csrf_field=CSRF_FIELD,
            settings=self.settings,
            url=self.settings.path,
            **context,
        )
        return self.respond(status, body, headers)

    def respond(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> Response:
        return Response(
            status_code=status,
            content_type=HTML,
            body=body,
            headers={**security_headers(self.settings), **(headers or {})},
            cookies=list(self.request.set_cookies),
        )

    def download(self, data: bytes, filename: str, content_type: str) -> Response:
        """A file for the browser (API Gateway returns it as binary: the body is base64 in the event)."""
        return Response(
            status_code=200,
            content_type=content_type,
            body=data,
            headers={
                **security_headers(self.settings),
                "Content-Disposition": f'inline; filename="{filename}"',
            },
            cookies=list(self.request.set_cookies),
        )

    def redirect(self, location: str, *, status: int = 303) -> Response:
        """``location`` is a site path (``/dashboard``, put under the base path) or an absolute URL."""
        if location.startswith("/"):
            location = self.settings.path(location)
        return self.respond(status, headers={"Location": location})

    def set_cookie(self, value: Cookie) -> None:
        self.request.set_cookies.append(value)

    def error(self, status: int, title: str, message: str, **context: Any) -> Response:
        return self.page("error.html", status=status, title=title, message=message, **context)

    # error handlers --------------------------------------------------------------------------------

    def _http_error(self, error: HttpError) -> Response:
        logger.info("request refused", extra={"status": error.status, "reason": error.message})
        return self.error(error.status, error.title, error.message)

    def _not_found(self, _: Exception) -> Response:
        request = self.request
        allowed = next((m for pattern, m in self.routes.items() if matches(pattern, request.path)), None)
        if allowed and request.method not in allowed:
            page = self.error(405, "Method not allowed", f"{request.path} does not accept {request.method}.")
            page.headers["Allow"] = ", ".join(sorted(allowed))
            return page
        return self.error(404, "Page not found", "There is no page at this address.")


def at_least(started: float, minimum_ms: int) -> None:
    """Pads a response to a floor so its timing says nothing about which branch ran."""
    remaining = minimum_ms / 1000 - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)


def catch_all(app: APIGatewayRestResolver, web: Web) -> Callable[[Exception], Response]:
    """Anything unexpected: logged with its stack, shown as a plain page without details."""

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return web.error(500, "Something went wrong", "Please try again in a few minutes.")

    return _unexpected
