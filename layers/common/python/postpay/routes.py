"""The routes table: path -> methods -> function. One table read by the CDK stack (which function each
API Gateway resource integrates), the local gateway (which function a request goes to) and the page
functions (which methods a path accepts: any other is answered 405 with an ``Allow`` header).

Paths are API Gateway resource paths; anything not listed goes to the signup function, whose not-found
page answers it (so an unknown address is a clear 404 page, not a gateway error). Every method of a path
goes to one function: the gateway integrates ANY, so a wrong method reaches the page's 405 answer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    function: str
    methods: frozenset[str]


def _route(function: str, *methods: str) -> Route:
    return Route(function, frozenset(methods))


ROUTES: dict[str, Route] = {
    "/": _route("signup", "GET"),
    "/signup": _route("signup", "GET", "POST"),
    "/signup/sent": _route("signup", "GET"),
    "/verify": _route("verify", "GET", "POST"),
    "/sso": _route("sso", "POST"),
    "/login": _route("sso", "GET", "POST"),
    "/logout": _route("sso", "POST"),
    "/dashboard": _route("sso", "GET"),
    "/invoices": _route("sso", "GET"),
    "/invoices/{number}": _route("sso", "GET"),
    "/invoices/{number}/pay": _route("sso", "GET", "POST"),
    "/invoices/{number}/authenticated": _route("sso", "POST"),
    "/forgot": _route("sso", "GET", "POST"),
    "/reset": _route("sso", "GET", "POST"),
    "/account": _route("sso", "GET"),
    "/account/password": _route("sso", "POST"),
    "/account/billing": _route("sso", "POST"),
    "/account/card": _route("sso", "GET", "POST"),
    "/account/card/remove": _route("sso", "GET", "POST"),
    "/finish": _route("sso", "POST"),
    "/payments/stripe": _route("payments", "POST"),
}
FALLBACK_FUNCTION = "signup"


def methods_of(function: str) -> dict[str, set[str]]:
    """The paths a function serves, each with the methods it accepts."""
    return {path: set(route.methods) for path, route in ROUTES.items() if route.function == function}


def function_for(path: str) -> str:
    for pattern, route in ROUTES.items():
        if matches(pattern, path):
            return route.function
    return FALLBACK_FUNCTION


def matches(pattern: str, path: str) -> bool:
    want, have = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(have):
        return False
    return all(
        w == h or (w.startswith("{") and w.endswith("}") and h) for w, h in zip(want, have, strict=True)
    )
