"""Which function serves which path: read by the CDK stack and by the local gateway alike.

Paths are API Gateway resource paths; anything not listed goes to the signup function, whose
not-found page answers it (so an unknown address is a clear 404 page, not a gateway error)."""

from __future__ import annotations

FUNCTION_ROUTES: dict[str, list[str]] = {
    "signup": ["/", "/signup"],
    "verify": ["/verify"],
    "sso": [
        "/sso",
        "/login",
        "/logout",
        "/dashboard",
        "/invoices",
        "/invoices/{number}",
        "/forgot",
        "/reset",
        "/account",
        "/account/password",
        "/account/billing",
        "/finish",
    ],
}
FALLBACK_FUNCTION = "signup"


def function_for(path: str) -> str:
    for function, paths in FUNCTION_ROUTES.items():
        for pattern in paths:
            if matches(pattern, path):
                return function
    return FALLBACK_FUNCTION


def matches(pattern: str, path: str) -> bool:
    want, have = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(have):
        return False
    return all(
        w == h or (w.startswith("{") and w.endswith("}") and h) for w, h in zip(want, have, strict=True)
    )
