"""``make invoice PAYLOAD=…``: the operator's payloads, the re-bill among them, against a local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

from tests.integration.billing_helpers import drain, enrolled_account, invoices_of, invoke, seed_servers
from tests.integration.test_invoicing import OCTOBER_SERVERS


def local_invoice(stack, worker, *args: str) -> subprocess.CompletedProcess:
    """``python -m local.invoice`` as ``make invoice`` runs it, the worker draining the queue meanwhile."""
    env = {
        **os.environ,
        "PORT": "8080",
        "MOTO_PORT": str(urlsplit(stack.aws_endpoint).port),
        "EMULATOR_PORT": str(urlsplit(stack.emulator.root).port),
        "STRIPE_PORT": str(urlsplit(stack.stripe.url).port),
        "POSTPAY_RUN_STATE": "/nonexistent/run-state.json",  # this stack's ports, not a developer's make run
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "local.invoice", *args, "--timeout", "60"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while process.poll() is None:
        drain(worker, rounds=2)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_the_operator_rebills_a_nothing_to_bill_month_locally_and_a_second_rebill_is_refused(
    stack, functions, worker
):
    # Given a client whose October was nothing to bill, and SolusVM reporting October usage after all
    account = enrolled_account(stack, functions, servers=[])
    invoke(functions, {"invoicingDate": "2022-11-01"})
    drain(worker)
    seed_servers(stack, account.solus_user_id, OCTOBER_SERVERS)
    payload = json.dumps({"rebill": {"client": account.client_id, "period": "2022-10"}})
    # When the operator sends the re-bill payload to the local stack
    done = local_invoice(stack, worker, "--payload", payload)
    # Then it follows the re-bill's run to its end: one invoice
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["runId"].startswith(f"rebill-2022-10-{account.client_id}-") and summary["invoiced"] == 1
    [item] = invoices_of(account.client_id)
    # And the same payload again is refused, saying why, and changes nothing
    again = local_invoice(stack, worker, "--payload", payload)
    assert again.returncode == 1
    assert f"rebill refused: client {account.client_id} already has invoice {item.number}" in again.stderr
    assert "refused: rebill refused" not in again.stderr  # said once
    assert len(invoices_of(account.client_id)) == 1
    # And a payload that is not JSON is refused the same way
    broken = local_invoice(stack, worker, "--payload", "{rebill")
    assert broken.returncode == 1
    assert broken.stderr.startswith("refused: the payload is not valid JSON (Expecting property name")
    assert "at line 1 column 2): {rebill" in broken.stderr
