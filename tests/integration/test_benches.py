"""The benches run: a handful of accounts through the AWS model, and the page bench (smoke tests only: the
figures themselves come from `make bench` and README, Speed and scale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INVOICE_QUEUE_URL"))}
    env["PYTHONPATH"] = f"{ROOT / 'layers/common/python'}:{ROOT}"
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


def test_the_invoicing_bench_invoices_a_handful_of_accounts_with_two_workers_and_its_floor():
    report = run("bench.invoicing", "--accounts", "6", "--workers", "2", "--latency", "solusvm=20,ses=10")
    [figures] = report["runs"]
    assert figures["invoiced"] == 6 and figures["workers"] == 2
    per_account = figures["requestsPerInvoicedAccount"]
    assert per_account["solusvm"] == 1 and per_account["ses"] == 1
    assert figures["floor"]["requests"] == round(per_account["total"] * 6)
    assert figures["floor"]["seconds"] > 0 and figures["roundTripMs"]["solusvm"] >= 20


def test_the_page_bench_reports_each_route_and_its_dynamodb_reads():
    report = run("bench.pages", "--repeat", "3", "--invoices", "3")
    routes = report["routes"]
    assert set(routes) >= {"/dashboard", "/invoices", "/invoices/{number}"}
    assert routes["/invoices"]["dynamodbRequests"] == {"GetItem": 2.0, "Query": 1.0}
    assert routes["/invoices/{number}"]["dynamodbRequests"] == {"GetItem": 2.0, "Query": 1.0}
