"""Browser tests: the local stack exactly as `make run` starts it, driven by headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Site:
    def __init__(self, port: int, emulator_port: int, moto_port: int = 0, stripe_port: int = 0) -> None:
        self.base = f"http://localhost:{port}"
        self.emulator = f"http://127.0.0.1:{emulator_port}"
        self.stripe = f"http://127.0.0.1:{stripe_port}"
        self.ports = {
            "PORT": str(port),
            "EMULATOR_PORT": str(emulator_port),
            "MOTO_PORT": str(moto_port),
            "STRIPE_PORT": str(stripe_port),
        }


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    port, moto_port, emulator_port, stripe_port = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.run",
            "--port",
            str(port),
            "--moto-port",
            str(moto_port),
            "--emulator-port",
            str(emulator_port),
            "--stripe-port",
            str(stripe_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    site = Site(port, emulator_port, moto_port, stripe_port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(site.base + "/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"the local stack did not start:\n{output}")
            time.sleep(0.3)
        yield site
    finally:  # never leave the stack running, whatever happened
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make browser` (make test does it for you)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
