"""``make op`` drives every operator payload against ``make run`` started on non-default ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    state_file = tmp_path_factory.mktemp("run") / "state.json"
    env = {**os.environ, "POSTPAY_RUN_STATE": str(state_file)}
    for key in ("AWS_ENDPOINT_URL", "INVOICE_QUEUE_URL"):
        env.pop(key, None)  # make run's own, not the test session's stack
    ports = [str(_free_port()) for _ in range(4)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.run",
            "--port",
            ports[0],
            "--moto-port",
            ports[1],
            "--emulator-port",
            ports[2],
            "--stripe-port",
            ports[3],
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not state_file.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert state_file.exists(), "make run wrote no state file"
    try:
        yield {"env": env, "state": json.loads(state_file.read_text()), "process": process, "ports": ports}
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        assert not state_file.exists(), "make run left its state file behind"
        assert "make invoice DATE=" in output and "NOW=" in output  # the banner's example


def op(running: dict, payload: dict | str, *more: str) -> subprocess.CompletedProcess:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run(
        ["make", "--no-print-directory", "op", f"PAYLOAD={text}", *more],
        cwd=ROOT,
        env=running["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(running: dict, payload: dict, *more: str) -> dict:
    done = op(running, payload, *more)
    assert done.returncode == 0, (payload, done.stdout, done.stderr)
    return json.loads(done.stdout)


def refused(running: dict, payload: dict | str, message: str) -> None:
    done = op(running, payload)
    assert done.returncode != 0 and message in done.stderr, (payload, done.stdout, done.stderr)


def test_the_state_file_names_the_non_default_ports(running):
    state = running["state"]
    assert state["port"] == int(running["ports"][0])
    assert state["awsEndpoint"].endswith(f":{running['ports'][1]}")
    assert state["emulatorRoot"].endswith(f":{running['ports'][2]}")
    assert state["stripeUrl"].endswith(f":{running['ports'][3]}")


def test_make_op_drives_every_payload(running):
    # Given an enrolled account with October 2022 usage in make run's stack
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.integration.seed_local"],
        cwd=ROOT,
        env=running["env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    account = json.loads(seeded.stdout.strip().splitlines()[-1])
    client = account["client"]
    # invoicingDate: the run is followed to its end, with a progress bar on stderr
    dry = ok(running, {"invoicingDate": "2022-11-01", "dryRun": True})
    assert dry["wouldInvoice"] == 1
    run = ok(running, {"invoicingDate": "2022-11-01"}, "RUN_JOIN_MINUTES=10")  # the deployed join window
    assert run["finished"] and run["state"] == "finished" and run["invoiced"] == 1
    assert ok(running, {"runStatus": run["runId"]})["invoiced"] == 1
    # the same request again within RUN_JOIN_MINUTES joins that run, and says so on stderr
    again = op(running, {"invoicingDate": "2022-11-01"}, "RUN_JOIN_MINUTES=10")
    assert again.returncode == 0 and json.loads(again.stdout)["joined"], again.stderr
    assert f"note: joined run {run['runId']} started at " in again.stderr
    assert "accounts enrolled since are not in it" in again.stderr
    # account, listInvoices, resendInvoice
    found = ok(running, {"account": account["email"]})
    [invoice] = found["invoices"]
    assert found["client"] == client and invoice["status"] == "unpaid"
    listed = ok(running, {"listInvoices": {"status": "unpaid", "client": client}})
    assert [i["number"] for i in listed["invoices"]] == [invoice["number"]]
    assert ok(running, {"resendInvoice": invoice["number"]})["history"][0]["event"] == "emailed again"
    # voidInvoice, then rebill once
    void = ok(running, {"voidInvoice": invoice["number"], "reason": "wrong price"})
    assert void["creditNote"]["number"] == "CN-000001"
    rebill = ok(running, {"rebill": {"client": client, "period": "2022-10"}})
    assert rebill["invoiced"] == 1
    refused(running, {"rebill": {"client": client, "period": "2022-10"}}, "already has invoice")
    # markPaid (a list), exportInvoices, schedule
    [new] = [i for i in ok(running, {"account": client})["invoices"] if i["status"] == "unpaid"]
    paid = ok(running, {"markPaid": [{"invoice": new["number"], "reference": "bank 1"}]})
    assert paid["invoice"] == new["number"] and paid["status"] == "paid"
    export = ok(running, {"exportInvoices": "2022-10"})
    assert (export["invoices"], export["creditNotes"]) == (2, 1) and "CN-000001" in export["csv"]
    assert "upkeep" in ok(running, {"schedule": "daily"})
    # refusals fail (make exits non-zero) with the message on stderr
    refused(running, {"voidInvoice": "INV-999999", "reason": "x"}, "no invoice 'INV-999999'")
    refused(running, {"listInvoices": {"status": "late"}}, "status must be one of")
    refused(running, "{not json", "refused: ")


def test_make_op_passes_any_characters_through_to_the_payload(running):
    # an apostrophe, a $, backticks and quotes reach the product as typed: no shell syntax error
    done = op(running, {"voidInvoice": "INV-777777", "reason": 'client\'s "$HOME" `date` request'})
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "no invoice" in done.stderr and "INV-777777" in done.stderr, done.stderr
    assert "syntax error" not in done.stderr and "unexpected EOF" not in done.stderr


def test_make_op_refuses_a_now_that_is_not_a_time(running):
    done = op(running, {"schedule": "daily"}, "NOW=garbage")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "refused: NOW='garbage' is not an ISO 8601 time" in done.stderr, done.stderr
