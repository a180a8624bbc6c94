"""Integration: the real handlers in-process, moto server for AWS and the SolusVM emulator over HTTP."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from local.events import load_function
from local.stack import LocalStack
from tests import aws_calls, workers
from tests.browser import Browser

FUNCTIONS = ("signup", "verify", "sso")
AUTOMATION = ("automation",)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        solusvm_timeout=1.0,
        # RUN_JOIN_MINUTES 0: each test's invoicing request starts its own run (tests/integration/
        # test_operations.py turns joining on where it is the subject)
        settings={"SIGNUP_MIN_RESPONSE_MS": "0", "SIGNUPS_PER_IP_PER_HOUR": "20", "RUN_JOIN_MINUTES": "0"},
    ).start()
    # What each function calls, here and in the Lambda pool's processes: the IAM test's evidence.
    aws_calls.install(os.environ["TABLE_PREFIX"])
    os.environ[aws_calls.SPILL] = str(tmp_path_factory.mktemp("aws-calls"))
    yield local
    local.stop()


@pytest.fixture(scope="session")
def functions(stack: LocalStack) -> dict[str, Any]:
    loaded = {name: load_function(name) for name in FUNCTIONS}
    loaded["automation"] = load_function("automation")
    loaded["payments"] = load_function("payments")
    loaded["worker"] = load_function("automation", "worker")
    return loaded


@pytest.fixture(scope="session")
def lambda_pool(functions: dict[str, Any]) -> Iterator[ProcessPoolExecutor]:
    """Four execution environments in their own processes, warmed (settings read, modules imported)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=4,
        mp_context=context,
        initializer=workers.init,
        initargs=(list(sys.path), os.environ["TABLE_PREFIX"]),
    ) as pool:
        list(pool.map(workers.warm, [name for name in (*FUNCTIONS, "automation") for _ in range(4)]))
        yield pool


@pytest.fixture
def concurrent_browser(lambda_pool: ProcessPoolExecutor):
    """A browser whose requests run in separate processes, so several can run at the same time."""

    def make(**kwargs: Any) -> Browser:
        kwargs.setdefault("source_ip", random_ip())
        handlers = {
            name: (lambda event, _ctx, name=name: lambda_pool.submit(workers.invoke, name, event).result())
            for name in FUNCTIONS
        }
        return Browser(handlers, **kwargs)

    return make


@pytest.fixture
def worker(stack: LocalStack, functions: dict[str, Any]):
    """The automation worker on the local queue; tests drain it explicitly (short visibility for retries)."""
    return stack.worker(visibility_timeout=1)


@pytest.fixture(autouse=True)
def one_rate_limit_window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rate-limit count of a test falls in the fixed window that holds the test's start.

    Counted in real time, a test that fails 50 log-ins (or signs up 20 times) fails whenever a 15-minute (or
    hourly) boundary falls inside it: the count starts again and the limit is never reached. The windows
    themselves are unit-tested with an in-memory store (tests/unit/test_guard.py)."""
    if "functions" not in request.fixturenames:
        return
    started = datetime.now(UTC)
    for module in request.getfixturevalue("functions").values():
        store = module.container.counters
        for name in ("hit", "hits", "clear_hits"):
            counted = getattr(store, name)
            monkeypatch.setattr(
                store, name, lambda key, window, now, counted=counted: counted(key, window, started)
            )


@pytest.fixture(autouse=True)
def clean_emulator(stack: LocalStack) -> Iterator[None]:
    yield
    requests.delete(f"{stack.emulator.root}/_emulator/faults", timeout=5)


@pytest.fixture
def browser(functions: dict[str, Any]) -> Browser:
    # A fresh browser from its own address, so rate limits of one test never touch another.
    return Browser({name: functions[name].handler for name in FUNCTIONS}, source_ip=random_ip())


@pytest.fixture
def new_browser(functions: dict[str, Any]):
    def make(**kwargs: Any) -> Browser:
        kwargs.setdefault("source_ip", random_ip())
        return Browser({name: functions[name].handler for name in FUNCTIONS}, **kwargs)

    return make


@pytest.fixture
def settings_override(functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    """Changes settings of every function for one test, as a redeploy with other configuration would."""

    def apply(**changes: Any) -> None:
        for module in functions.values():
            if not hasattr(module, "web"):
                continue
            updated = dataclasses.replace(module.settings, **changes)
            monkeypatch.setattr(module, "settings", updated)
            monkeypatch.setattr(module.web, "settings", updated)
            monkeypatch.setattr(module.container, "settings", updated)
            for service in ("enrollment", "provisioner", "sessions", "guard", "client_area"):
                if service in module.container.__dict__:
                    monkeypatch.delitem(module.container.__dict__, service)

    return apply


def random_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def fault(stack: LocalStack, **spec: Any) -> None:
    requests.post(f"{stack.emulator.root}/_emulator/faults", json=spec, timeout=5).raise_for_status()


def emulator_users(stack: LocalStack, email: str) -> list[dict]:
    state = requests.get(f"{stack.emulator.root}/_emulator/state", timeout=5).json()
    return [u for u in state["users"] if u["email"].lower() == email.lower()]


def verify_link(stack: LocalStack, email: str) -> str:
    mails = [m for m in stack.mails_to(email) if m.subject == "Confirm your email address"]
    assert mails, f"no verification email to {email}"
    match = re.search(r'href="([^"]+/verify\?token=[^"]+)"', mails[-1].html)
    assert match
    return match.group(1).replace("&amp;", "&")


PASSWORD = "a long enough passphrase"


def sign_up(browser: Browser, email: str, password: str = PASSWORD, **extra: str):
    fields = {"name": "Ada Lovelace", "company": "Analytical Engines", "email": email, "password": password}
    fields.update(extra)
    return browser.submit("/signup", "/signup", fields)


def verify(browser: Browser, stack: LocalStack, email: str, password: str = PASSWORD, **boxes: str):
    """Follows the newest link to ``email``, types the sign-up password and accepts the terms."""
    link = verify_link(stack, email)
    page = browser.get(link)
    assert page.status == 200, page.body
    fields = {
        "token": page.field("token"),
        "password": password,
        **(boxes or {"accept_tos": "yes", "accept_postpay_terms": "yes"}),
    }
    return follow(browser, browser.post("/verify", fields, csrf_from=page))


def follow(browser: Browser, answer: Any) -> Any:
    """A browser follows a 303 after a form (post-redirect-get) to the page that says the outcome."""
    if answer.status == 303 and answer.location.startswith("/"):
        return browser.get(answer.location)
    return answer
