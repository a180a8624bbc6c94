"""The one module that talks to SolusVM 2 (see shared/reference/solusvm-api.md).

Retries: transport errors and 5xx only, with backoff and a cap, and only for idempotent methods (a
connection that was never made is retried for any method). A POST is never retried blindly: provisioning
re-reads before it creates, so a lost answer is found next time. 4xx is never retried. TLS verification
stays on.

Deadline: inside ``with client.deadline(seconds)`` every call, retries and backoff included, shares one budget
(a page request's): each attempt's timeouts are cut to what is left, and no attempt starts once it is spent.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from postpay.errors import SolusRejected, SolusUnavailable
from postpay.limits import (
    SOLUSVM_BACKOFF_FACTOR,
    SOLUSVM_BACKOFF_MAX_SECONDS,
    SOLUSVM_CONNECT_TIMEOUT_SECONDS,
    SOLUSVM_RETRIES,
)
from postpay.models import SolusUser
from postpay.observability import logger, metrics

_IDEMPOTENT = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD"})
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_ATTEMPTS = SOLUSVM_RETRIES + 1  # the first and two retries (postpay.limits: what a worst-case job takes)
_BACKOFF_SECONDS = SOLUSVM_BACKOFF_FACTOR  # doubled after each attempt, at most SOLUSVM_BACKOFF_MAX_SECONDS
_MIN_ATTEMPT_SECONDS = 0.1  # less than this left of a deadline: do not start another attempt
_MAX_PAGES = 1000


class SolusVMClient:
    def __init__(
        self,
        base_url: str,
        token_provider: Callable[[], str],
        *,
        timeout_seconds: float = 10.0,
        usage_path: str = "users/{user_id}/usage",
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._token_provider = token_provider
        self.timeout = (min(SOLUSVM_CONNECT_TIMEOUT_SECONDS, timeout_seconds), timeout_seconds)
        self.usage_path = usage_path
        self._session = session
        self._monotonic = monotonic
        self._sleep = sleep
        self._deadline: float | None = None
        self._local = threading.local()  # a requests.Session is not thread-safe: one per thread
        self._token_lock = threading.Lock()  # parallel first calls wait for one fetch of the token

    @property
    def session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=4))
            session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=4))
            self._local.session = session
        return session

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Every call inside shares one budget of ``seconds``, retries included."""
        previous = self._deadline
        self._deadline = self._monotonic() + seconds
        try:
            yield
        finally:
            self._deadline = previous

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._monotonic()

    def _attempt_timeout(self, method: str, path: str) -> tuple[float, float]:
        remaining = self._remaining()
        if remaining is None:
            return self.timeout
        if remaining < _MIN_ATTEMPT_SECONDS:
            raise SolusUnavailable(f"{method} {path}: the request's time budget is spent")
        return (min(self.timeout[0], remaining), min(self.timeout[1], remaining))

    # transport -------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        with self._token_lock:
            token = self._token_provider()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        idempotent = method in _IDEMPOTENT
        for attempt in range(_ATTEMPTS):
            if attempt:
                pause = min(_BACKOFF_SECONDS * 2 ** (attempt - 1), SOLUSVM_BACKOFF_MAX_SECONDS)
                remaining = self._remaining()
                if remaining is not None:
                    pause = min(pause, max(remaining - _MIN_ATTEMPT_SECONDS, 0))
                self._sleep(pause)
            timeout = self._attempt_timeout(method, path)
            started = self._monotonic()
            try:
                response = self.session.request(
                    method, self.base_url + path, params=params, json=json, headers=headers, timeout=timeout
                )
            except requests.RequestException as error:
                # The exception text holds the URL only, never the headers, so it is safe to log.
                failure = SolusUnavailable(f"{method} {path}: {type(error).__name__}")
                never_sent = isinstance(error, requests.ConnectTimeout)
                retryable = never_sent or (
                    idempotent and isinstance(error, requests.ConnectionError) and not _read_timeout(error)
                )
                if retryable and attempt + 1 < _ATTEMPTS:
                    continue
                raise failure from error
            elapsed_ms = (self._monotonic() - started) * 1000
            metrics.add_metric(name="SolusVmLatency", unit="Milliseconds", value=elapsed_ms)
            if response.status_code in _RETRY_STATUSES and idempotent and attempt + 1 < _ATTEMPTS:
                continue
            return self._answer(method, path, response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _answer(self, method: str, path: str, response: requests.Response) -> Any:
        if response.status_code >= 500:
            raise SolusUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            message, errors = _error_body(response)
            logger.warning(
                "SolusVM refused a request",
                extra={
                    "method": method,
                    "path": path,
                    "status": response.status_code,
                    "solus_message": message,
                    "solus_errors": errors,
                },
            )
            raise SolusRejected(response.status_code, message, errors)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise SolusUnavailable(f"{method} {path}: answer is not JSON") from error

    def _pages(self, path: str, params: dict[str, str]) -> Iterator[dict]:
        page = 1
        while page <= _MAX_PAGES:
            body = self.request("GET", path, params={**params, "page": str(page)})
            yield from body.get("data") or []
            meta = body.get("meta") or {}
            links = body.get("links") or {}
            current, last = meta.get("current_page", page), meta.get("last_page", page)
            if current >= last or ("next" in links and not links["next"]):
                return
            page += 1

    # users -----------------------------------------------------------------------------------------

    def find_user_by_email(self, email: str) -> SolusUser | None:
        """``filter[search]`` is a search, not an exact match: page through and compare case-insensitively."""
        wanted = email.strip().lower()
        for user in self._pages("users", {"filter[search]": email}):
            if str(user.get("email", "")).strip().lower() == wanted:
                return _user(user)
        return None

    def get_user(self, user_id: int) -> SolusUser:
        return _user(self.request("GET", f"users/{user_id}")["data"])

    def create_user(self, *, email: str, billing_user_id: int, limit_group_id: int | None) -> SolusUser:
        body: dict[str, Any] = {
            "email": email,
            # The user never types it: they enter through SSO. Long, random, never stored or logged.
            "password": secrets.token_urlsafe(24) + "aA1!",
            "status": "active",
            "billing_user_id": billing_user_id,
        }
        if limit_group_id is not None:
            body["limit_group_id"] = limit_group_id
        return _user(self.request("POST", "users", json=body)["data"])

    def link_user(self, user_id: int, billing_user_id: int) -> SolusUser:
        return _user(
            self.request("PUT", f"users/{user_id}", json={"billing_user_id": billing_user_id})["data"]
        )

    def set_status(self, user_id: int, status: str) -> SolusUser:
        return _user(self.request("PATCH", f"users/{user_id}", json={"status": status})["data"])

    def one_time_login_token(self, user_id: int) -> str:
        body = self.request("POST", f"users/{user_id}/tokens", json={"is_one_time": True})
        token = (body or {}).get("data", {}).get("access_token")
        if not token:
            raise SolusUnavailable("SolusVM returned no access token")
        return str(token)

    # usage -----------------------------------------------------------------------------------------

    def usage(self, user_id: int, date_from: date, date_to: date) -> dict:
        """The raw usage answer (kept with invoices so they can be recomputed)."""
        path = self.usage_path.format(user_id=user_id)
        params = {"filter[date_from]": date_from.isoformat(), "filter[date_to]": date_to.isoformat()}
        return self.request("GET", path, params=params)


def _read_timeout(error: requests.RequestException) -> bool:
    """A read that timed out is not retried (the server may still be acting on it), as before."""
    return isinstance(error, requests.ReadTimeout) or "Read timed out" in str(error)


def _user(data: dict) -> SolusUser:
    billing = data.get("billing_user_id")
    return SolusUser(
        id=int(data["id"]),
        email=str(data.get("email", "")),
        status=str(data.get("status", "")),
        billing_user_id=int(billing) if billing is not None else None,
    )


def _error_body(response: requests.Response) -> tuple[str, dict]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}", {}
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}", {}
    return str(body.get("message") or f"HTTP {response.status_code}"), body.get("errors") or {}
