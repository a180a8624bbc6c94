"""Invoicing throughput: N accounts x 3 servers through the real run handler and worker code, against moto
server and the SolusVM emulator (each in its own process), compared with an I/O floor measured in this
same process: the product's own requests, recorded and replayed byte for byte with no product logic.

    make bench                      # 2,000 accounts
    python -m bench.invoicing --accounts 200
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import urllib3.connectionpool

ROOT = Path(__file__).resolve().parent.parent
SERVERS_PER_ACCOUNT = 3
TOKEN = "bench-solusvm-token"  # noqa: S105 - the emulator's own


class RequestCounter:
    """Counts every HTTP request this process makes, by kind (SolusVM, DynamoDB, SES, SQS)."""

    def __init__(self, solus_port: int) -> None:
        self.solus_port = solus_port
        self.counts: Counter[str] = Counter()
        self.recording: list[tuple[int, str, str, Any, dict]] | None = None
        self._original = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def install(self) -> None:
        counter, original = self, self._original

        def urlopen(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            headers = kwargs.get("headers") or {}
            counter.counts[counter.kind(pool.port, url, headers)] += 1
            if counter.recording is not None:
                counter.recording.append((pool.port, method, url, kwargs.get("body"), dict(headers)))
            return original(pool, method, url, *args, **kwargs)

        urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]

    def kind(self, port: int, url: str, headers: Any) -> str:
        if port == self.solus_port:
            return "solusvm"
        target = headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        if target.startswith("DynamoDB"):
            return "dynamodb"
        if target.startswith("AmazonSQS"):
            return "sqs"
        if target.startswith(("AmazonSSM", "secretsmanager")):
            return "parameters"
        if "/v2/email" in url:
            return "ses"
        return f"other:{target or url[:40]}"

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def start_moto() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/moto-api/")
    return process, port


def start_servers() -> tuple[list[subprocess.Popen], int, int]:
    solus_port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}"}
    moto, moto_port = start_moto()
    processes = [
        moto,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local.solusvm_emulator",
                "--port",
                str(solus_port),
                "--token",
                TOKEN,
                "--auto-servers",
                "0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    wait_for(f"http://127.0.0.1:{solus_port}/_emulator/state")
    return processes, moto_port, solus_port


def configure(moto_port: int, solus_port: int) -> None:
    from local.stack import _fake_credentials, local_settings

    os.environ.update(_fake_credentials())
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{moto_port}"
    os.environ.update(
        local_settings(
            "http://localhost:8080", f"http://127.0.0.1:{solus_port}", extra={"POWERTOOLS_LOG_LEVEL": "ERROR"}
        )
    )


def bootstrap(solus_port: int) -> None:
    import boto3

    from local.stack import LocalStack

    stack = LocalStack.__new__(LocalStack)
    LocalStack.bootstrap(stack)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=os.environ["SOLUSVM_TOKEN_SECRET"], SecretString=TOKEN
    )


def seed(accounts: int, solus_port: int) -> None:
    """Enrolled accounts, each with a SolusVM user and three servers that ran all of October 2022."""
    from postpay.adapters.dynamo import AccountItem

    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    users = [
        {
            "email": f"bench-{i}@example.com",
            "billing_user_id": i + 1,
            "servers": [
                {"plan_id": 1 + s, "created_at": "2022-09-01T00:00:00+00:00"}
                for s in range(SERVERS_PER_ACCOUNT)
            ],
        }
        for i in range(accounts)
    ]
    ids = requests.post(
        f"http://127.0.0.1:{solus_port}/_emulator/seed", json={"users": users}, timeout=120
    ).json()["ids"]
    with AccountItem.batch_write() as batch:
        for i, user_id in enumerate(ids):
            batch.save(
                AccountItem(
                    users[i]["email"],
                    client_id=i + 1,
                    name=f"Bench {i}",
                    company="",
                    password_hash="x",  # noqa: S106 - never logs in
                    status="enrolled",
                    created_at=long_ago,
                    verified_at=long_ago,
                    enrolled_at=long_ago,
                    solus_user_id=user_id,
                )
            )


def run_product(counter: RequestCounter) -> tuple[float, dict, Counter[str]]:
    from local.events import LambdaContext, load_function
    from local.poller import QueuePoller

    automation = load_function("automation")
    worker = QueuePoller(os.environ["INVOICE_QUEUE_URL"], load_function("automation", "worker").handler)
    before = counter.snapshot()
    started = time.perf_counter()
    summary = automation.handler({"invoicingDate": "2022-11-01"}, LambdaContext(function_name="automation"))
    while True:
        if worker.poll_once(wait_seconds=0) == 0:
            summary = automation.handler(
                {"runStatus": summary["runId"]}, LambdaContext(function_name="automation")
            )
            if summary["finished"]:
                break
    elapsed = time.perf_counter() - started
    return elapsed, summary, counter.snapshot() - before


def create_tables_directly(prefix: str) -> None:
    """The same tables, through a new client (PynamoDB's connections still point at the first server)."""
    import boto3

    from postpay.adapters.tables import table_specs

    client = boto3.client("dynamodb")
    for spec in table_specs():
        schema = spec.schema
        extra = {}
        if schema.get("global_secondary_indexes"):
            extra["GlobalSecondaryIndexes"] = [
                {"IndexName": i["index_name"], "KeySchema": i["key_schema"], "Projection": i["projection"]}
                for i in schema["global_secondary_indexes"]
            ]
        client.create_table(
            TableName=prefix + spec.logical_name,
            AttributeDefinitions=schema["attribute_definitions"],
            KeySchema=schema["key_schema"],
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )


def bootstrap_services() -> None:
    from local.stack import bootstrap_services as create

    create()


def seed_accounts_directly(accounts: int, solus_port: int) -> None:
    """The floor server's accounts: the same items the product's server held (not timed)."""
    import boto3

    ddb = boto3.client("dynamodb")
    state = requests.get(f"http://127.0.0.1:{solus_port}/_emulator/state", timeout=60).json()
    users = {u["email"]: u["id"] for u in state["users"]}
    for start in range(0, accounts, 25):
        ddb.batch_write_item(
            RequestItems={
                os.environ["TABLE_PREFIX"] + "accounts": [
                    {
                        "PutRequest": {
                            "Item": {
                                "email": {"S": f"bench-{i}@example.com"},
                                "client_id": {"N": str(i + 1)},
                                "name": {"S": f"Bench {i}"},
                                "company": {"S": ""},
                                "password_hash": {"S": "x"},
                                "status": {"S": "enrolled"},
                                "created_at": {"S": "2020-01-01T00:00:00.000000+0000"},
                                "verified_at": {"S": "2020-01-01T00:00:00.000000+0000"},
                                "enrolled_at": {"S": "2020-01-01T00:00:00.000000+0000"},
                                "provisioning_attempts": {"N": "0"},
                                "notify_when_enrolled": {"BOOL": False},
                                "solus_user_id": {"N": str(users[f"bench-{i}@example.com"])},
                            }
                        }
                    }
                    for i in range(start, min(start + 25, accounts))
                ]
            }
        )


def run_floor(recording: list[tuple[int, str, str, Any, dict]], port_map: dict[int, int]) -> float:
    """The I/O floor: the product's own requests, byte for byte and in order, replayed with no product
    logic against a server in the same starting state. What remains is the time of the I/O alone."""
    pools: dict[int, urllib3.HTTPConnectionPool] = {}
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen
    started = time.perf_counter()
    for port, method, url, body, headers in recording:
        target = port_map.get(port, port)
        pool = pools.get(target)
        if pool is None:
            pool = pools[target] = urllib3.HTTPConnectionPool("127.0.0.1", target, maxsize=4)
        original(pool, method, url, body=body, headers=headers, retries=False, preload_content=True)
    return time.perf_counter() - started


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=2000)
    args = parser.parse_args()
    processes, moto_port, solus_port = start_servers()
    try:
        configure(moto_port, solus_port)
        bootstrap(solus_port)
        seed(args.accounts, solus_port)
        counter = RequestCounter(solus_port)
        counter.install()
        counter.recording = []
        cpu = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints metrics (EMF) to stdout
            product_time, summary, product_requests = run_product(counter)
        product_cpu = time.process_time() - cpu
        recording, counter.recording = counter.recording, None
        # The floor replays those requests against a fresh moto server in the same starting state (moto copies
        # whole tables in each transaction, so the product's grown tables would make the floor look slower).
        processes[0].terminate()  # the product's moto server: it must not compete with the floor for CPU
        processes[0].wait()
        floor_moto, floor_port = start_moto()
        processes.append(floor_moto)
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{floor_port}"
        create_tables_directly(os.environ["TABLE_PREFIX"])
        bootstrap_services()
        seed_accounts_directly(args.accounts, solus_port)
        cpu = time.process_time()
        floor_time = run_floor(recording, {moto_port: floor_port})
        floor_cpu = time.process_time() - cpu
    finally:
        for process in processes:
            process.terminate()
    invoiced = summary["invoiced"]
    assert invoiced == args.accounts, summary
    per_account = {k: round(v / invoiced, 2) for k, v in sorted(product_requests.items())}
    total_per_account = sum(product_requests.values()) / invoiced
    ratio = product_time / floor_time
    report = {
        "accounts": args.accounts,
        "serversPerAccount": SERVERS_PER_ACCOUNT,
        "invoiced": invoiced,
        "runSeconds": round(product_time, 2),
        "accountsPerSecond": round(invoiced / product_time, 1),
        "requestsPerInvoicedAccount": {**per_account, "total": round(total_per_account, 2)},
        "floorSeconds": round(floor_time, 2),
        "floorRequests": len(recording),
        "overheadOverFloor": f"{(ratio - 1) * 100:.1f}%",
        # CPU of this process alone: the product's own work per account versus replaying its bytes
        "clientCpuMsPerAccount": {
            "product": round(product_cpu * 1000 / invoiced, 2),
            "floor": round(floor_cpu * 1000 / invoiced, 2),
        },
        "targets": {"overhead <= 25%": ratio <= 1.25, "requests <= 6": total_per_account <= 6},
    }
    print(json.dumps(report, indent=2))
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
