"""Invoicing throughput in a model of AWS: N accounts x 3 servers through the real run handler and worker
code, with WORKERS worker processes (Lambda execution environments) fed from the queue, against moto server
and the SolusVM emulator (each in its own process), every request delayed by its AWS round trip on the
client side (bench/model.py). Compared with the I/O floor: the same requests with the same delays, replayed
with no product logic by the same number of processes, keeping the product's parallel groups.

    make bench                                  # 1, 5 and 20 workers, 1,000 accounts
    python -m bench.invoicing --accounts 200 --workers 1 5 --latency ses=60,solusvm=120
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.model import (
    DEFAULT_LATENCY_MS,
    RequestModel,
    VirtualClock,
    cpu_scale,
    install_threads,
    parse_latency,
    schedule,
)
from infra.scale import RUN_MEMORY_MB, USAGE_PARALLELISM, WORKER_MEMORY_MB

ROOT = Path(__file__).resolve().parent.parent
SERVERS_PER_ACCOUNT = 3
TOKEN = "bench-solusvm-token"  # noqa: S105 - the emulator's own
GOALS_AT = 20  # workers: the goals are for 20 concurrent workers
GOAL_ACCOUNTS_PER_SECOND = 120.0
GOAL_FLOOR_RATIO = 1.15
GOAL_REQUESTS_PER_ACCOUNT = 4.5
# the functions' memory as the stack deploys them (infra/scale.py); --worker-memory tries another
MEMORY_MB = {"run": RUN_MEMORY_MB, "worker": WORKER_MEMORY_MB}


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """The CPU the servers (moto, the emulator) spend between ``start`` and ``stop``."""

    def __init__(self, servers: dict[str, subprocess.Popen]) -> None:
        self.servers = servers
        self.started: dict[str, float] = {}

    def start(self) -> None:
        self.started = {name: cpu_seconds(p.pid) for name, p in self.servers.items()}

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) - self.started[name] for name, p in self.servers.items()}


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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}"}


def start_moto() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.moto", str(port)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/moto-api/")
    return process, port


def start_servers() -> tuple[list[subprocess.Popen], int, int]:
    solus_port = free_port()
    env = _env()
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
                "--keep-alive",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    wait_for(f"http://127.0.0.1:{solus_port}/_emulator/state")
    return processes, moto_port, solus_port


# Stripe as the stack deploys it once card payments are configured. No bench account has a card on file, so
# the worker never calls the gateway: this address takes no connection, and a call would fail the run.
STRIPE_UNREACHABLE = "http://127.0.0.1:9"


def configure(moto_port: int, solus_port: int) -> None:
    from local.stack import _fake_credentials, local_settings, stripe_settings

    os.environ.update(_fake_credentials())
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{moto_port}"
    os.environ.update(
        local_settings(
            "http://localhost:8080",
            f"http://127.0.0.1:{solus_port}",
            extra={"POWERTOOLS_LOG_LEVEL": "ERROR", **stripe_settings(STRIPE_UNREACHABLE)},
        )
    )


def bootstrap(solus_port: int) -> None:
    import boto3

    from local.stack import LocalStack

    LocalStack().bootstrap()  # tables, services and the invoice profile, as the local stack makes them
    boto3.client("secretsmanager").put_secret_value(
        SecretId=os.environ["SOLUSVM_TOKEN_SECRET"], SecretString=TOKEN
    )


def seed(accounts: int, solus_port: int) -> None:
    """Enrolled accounts, each with a SolusVM user and three servers that ran all of October 2022."""
    from postpay.adapters.tables import AccountItem

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


def create_tables_directly(prefix: str) -> None:
    """The same tables, through a new client (PynamoDB's connections still point at the first server)."""
    import boto3

    from postpay.adapters.tables import table_specs

    client = boto3.client("dynamodb")
    for spec in table_specs():
        schema = spec.schema
        extra: dict[str, Any] = {}
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


class Processes:
    """Worker processes started together, warm, then released at once."""

    def __init__(self, commands: list[list[str]], env: dict[str, str]) -> None:
        self.processes = [
            subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for command in commands
        ]
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a bench worker did not start: {line!r}")

    def go(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()

    def wait(self) -> None:
        for process in self.processes:
            if process.wait(timeout=600) != 0:
                raise RuntimeError("a bench worker failed")


def _worker_env(
    model: RequestModel,
    workdir: Path,
    port_map: dict[int, int] | None = None,
    workers: int = 1,
    cpu_factor: float = 1.0,
) -> dict[str, str]:
    return {
        **_env(),
        "BENCH_CPU_SCALE": str(cpu_scale(MEMORY_MB["worker"], cpu_factor)),
        "BENCH_DILATION": str(model.dilation),
        # as the stack deploys it: each of the workers may ask USAGE_PARALLELISM usage calls at once
        "INVOICE_WORKER_CONCURRENCY": str(workers),
        "SOLUSVM_MAX_CONCURRENCY": str(workers * USAGE_PARALLELISM),
        "BENCH_SOLUS_PORT": str(model.solus_port),
        "BENCH_LATENCY_MS": json.dumps(model.latency_ms),
        "BENCH_STOP_FILE": str(workdir / "stop"),
        "BENCH_PORT_MAP": json.dumps({str(k): v for k, v in (port_map or {}).items()}),
    }


def finished(run_id: str) -> bool:
    """Whether the run has an outcome for every job: the run's item alone (runStatus also queries the run's
    outcomes, which moto answers by walking the whole table: polled five times a second, that would load
    the server the workers share with it)."""
    from postpay.adapters.tables import RunItem
    from postpay.models import OUTCOMES

    item = RunItem.get(run_id, consistent_read=True)
    done = sum(int(getattr(item, name) or 0) for name in OUTCOMES)
    return item.state == "queued" and done >= int(item.queued or 0)


def run_product(
    model: RequestModel, workers: int, workdir: Path, servers: ServerCpu, cpu_factor: float = 1.0
) -> dict[str, Any]:
    """The run handler queues the jobs; WORKERS processes take batches (postpay.limits.WORKER_BATCH_SIZE)
    until the run has finished."""
    from local.events import LambdaContext, load_function

    automation = load_function("automation")
    # A warm environment, as the workers are after their first batch (see in_the_model): its first
    # invocation builds the tracer (X-Ray's SDK), the container and its DynamoDB client.
    with contextlib.suppress(Exception):
        automation.handler({"runStatus": "bench-warm-up"}, LambdaContext(function_name="automation"))
    outs = [workdir / f"product-{i}.pickle" for i in range(workers)]
    pool = Processes(
        [[sys.executable, "-m", "bench.worker", "product", str(out)] for out in outs],
        _worker_env(model, workdir, workers=workers, cpu_factor=cpu_factor),
    )
    clock = model.clock = VirtualClock(cpu_scale(MEMORY_MB["run"], cpu_factor))
    install_threads(clock)
    model.recording, model.counting = [], True
    servers.start()
    pool.go()
    started = time.time()
    run_cpu = time.process_time()
    run_start = clock.now()
    profiler = None
    if os.environ.get("BENCH_RUN_PROFILE"):  # the run handler's CPU by function (cProfile), to <value>
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    summary = automation.handler({"invoicingDate": "2022-11-01"}, LambdaContext(function_name="automation"))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_RUN_PROFILE"])
    run_end = clock.now()
    run_cpu = time.process_time() - run_cpu
    model.counting = False  # watching the run is the bench's own business
    while not finished(summary["runId"]):
        time.sleep(0.2)
    server_cpu = servers.stop()
    summary = automation.handler({"runStatus": summary["runId"]}, LambdaContext(function_name="automation"))
    (workdir / "stop").touch()
    pool.wait()
    figures = [pickle.loads(out.read_bytes()) for out in outs]  # noqa: S301 - written by our own worker, in our temp dir
    counts: Counter[str] = Counter(model.counts)
    operations: Counter[str] = Counter(model.operations)
    spent: Counter[str] = Counter()
    for figure in figures:
        counts.update(figure["counts"])
        operations.update(figure["operations"])
        for request in figure["recording"]:
            spent[request.kind] += request.ended - request.started
    return {
        "summary": summary,
        "model": in_the_model(figures, workers, run_start, run_end, model.sends),
        "seconds": max(f["last_done"] for f in figures) - started,
        "counts": counts,
        "operations": operations,
        "cpu": sum(f["cpu"] for f in figures),
        "run_cpu": run_cpu,
        "server_cpu": server_cpu,
        "run_recording": model.recording,
        "outs": outs,
        "spent": spent,
    }


def in_the_model(
    figures: list[dict[str, Any]],
    workers: int,
    run_start: tuple[float, float],
    run_end: tuple[float, float],
    sends: list[tuple[float, float]],
) -> dict[str, Any]:
    """The run's time in the model, the product's and its I/O floor's: the run handler's time, and the
    batches as the workers took them (in the order they were taken here) scheduled on WORKERS environments,
    each batch once its messages were queued (SQS takes ten per SendMessageBatch).

    Each environment's first batch pays its one-time costs (its clients, templates, the PDF's fonts: seconds
    of CPU). A run of 100,000 accounts pays them once per environment in thousands of batches, a bench of a
    few hundred in a handful, so the run is timed both ways: ``warm`` (every first batch counted at the mean
    of the later ones: the throughput of a long run) and ``asRun`` (as it happened here)."""
    batches = sorted(
        (taken, messages, product, floor, i == 0)
        for f in figures
        for i, (taken, messages, product, floor) in enumerate(f["batches"])
    )
    laters = [b[2] for b in batches if not b[4]]
    warm_first = sum(laters) / len(laters) if laters else None
    firsts = [b[2] for b in batches if b[4]]
    answer: dict[str, Any] = {
        "batches": len(batches),
        "firstBatchMs": round(1000 * sum(firsts) / max(1, len(firsts)), 1),
        "laterBatchMs": round(1000 * warm_first, 1) if warm_first is not None else None,
    }
    for name, which, warm in (("product", 0, True), ("asRun", 0, False), ("floor", 1, False)):
        durations, available, queued = [], [], 0
        for _, messages, product, floor, first in batches:
            duration = product if which == 0 else floor
            durations.append(warm_first if warm and first and warm_first is not None else duration)
            queued += messages
            send = sends[min((queued - 1) // 10, len(sends) - 1)] if sends else run_start
            available.append(send[which] - run_start[which])
        run = run_end[which] - run_start[which]
        answer[name] = {
            "seconds": schedule(durations, available, workers, not_before=run),
            "runHandlerSeconds": run,
            "batchMs": round(1000 * sum(durations) / max(1, len(durations)), 1),
        }
    return answer


def run_floor(
    model: RequestModel, product: dict[str, Any], port_map: dict[int, int], workdir: Path, servers: ServerCpu
) -> dict:
    """The same requests, the same delays, the same processes and parallel groups, no product logic."""
    import urllib3

    env = _worker_env(model, workdir, port_map)
    pool = Processes(
        [
            [sys.executable, "-m", "bench.worker", "floor", str(out), str(out.with_suffix(".floor"))]
            for out in product["outs"]
        ],
        env,
    )
    pools: dict[int, urllib3.HTTPConnectionPool] = {}
    servers.start()
    started = time.time()
    cpu = time.process_time()
    for request in product["run_recording"]:  # the run handler: one process, in order
        target = port_map.get(request.port, request.port)
        connection = pools.setdefault(target, urllib3.HTTPConnectionPool("127.0.0.1", target))
        model.delay(request.kind)
        connection.urlopen(
            request.method, request.url, body=request.body, headers=request.headers, retries=False
        )
    run_cpu = time.process_time() - cpu
    run_seconds = time.time() - started
    pool.go()
    pool.wait()
    server_cpu = servers.stop()
    figures = [pickle.loads(out.with_suffix(".floor").read_bytes()) for out in product["outs"]]  # noqa: S301 - written by our own worker, in our temp dir
    return {
        "seconds": run_seconds + max(f["last_done"] for f in figures) - min(f["started"] for f in figures),
        "cpu": run_cpu + sum(f["cpu"] for f in figures),
        "server_cpu": server_cpu,
    }


def measure(
    accounts: int,
    workers: int,
    latency: dict[str, float],
    cpu_factor: float = 1.0,
    dilation: float | None = None,
) -> dict[str, Any]:
    """One configuration, on fresh servers."""
    processes, moto_port, solus_port = start_servers()
    try:
        configure(moto_port, solus_port)
        bootstrap(solus_port)
        seed(accounts, solus_port)
        model = RequestModel(solus_port, latency, dilation=dilation or default_dilation(workers))
        model.counting = False
        model.install()
        with tempfile.TemporaryDirectory(prefix="postpay-bench-") as tmp:
            workdir = Path(tmp)
            emulator = processes[1]
            product = run_product(
                model, workers, workdir, ServerCpu({"moto": processes[0], "emulator": emulator}), cpu_factor
            )
            # The floor runs against a fresh moto server in the same starting state (the product's grown
            # tables would make moto itself slower for the floor).
            processes[0].terminate()
            processes[0].wait()
            floor_moto, floor_port = start_moto()
            processes.append(floor_moto)
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{floor_port}"
            create_tables_directly(os.environ["TABLE_PREFIX"])
            bootstrap_services()
            seed_accounts_directly(accounts, solus_port)
            floor = run_floor(
                model,
                product,
                {moto_port: floor_port},
                workdir,
                ServerCpu({"moto": floor_moto, "emulator": emulator}),
            )
    finally:
        for process in processes:
            process.terminate()
    figures = report(accounts, workers, product, floor, cpu_factor)
    figures["model"]["dilation"] = model.dilation
    return figures


def default_dilation(workers: int) -> float:
    """Half the workers (at least 1): twenty workers on two cores each wait ten times the round trip in real
    time, one worker the round trip itself (see RequestModel.dilation)."""
    return max(1.0, workers / 2)


def report(
    accounts: int, workers: int, product: dict[str, Any], floor: dict[str, Any], cpu_factor: float = 1.0
) -> dict[str, Any]:
    summary = product["summary"]
    invoiced = summary["invoiced"]
    assert invoiced == accounts, summary
    counts: Counter[str] = product["counts"]
    conflicts = counts.pop("transaction_cancelled", 0)
    total = sum(counts.values())
    ratio = product["seconds"] / floor["seconds"]
    model = product["model"]
    seconds, floor_seconds = model["product"]["seconds"], model["floor"]["seconds"]
    return {
        "workers": workers,
        "accounts": accounts,
        "invoiced": invoiced,
        # In the model (bench/model.py, VirtualClock): every request its AWS round trip, the CPU at the
        # functions' share of a vCPU, the batches scheduled on the workers (warm: see in_the_model); moto's
        # own time left out.
        "runSeconds": round(seconds, 2),
        "accountsPerSecond": round(invoiced / seconds, 1),
        "runOverFloor": round(seconds / floor_seconds, 3),
        "floor": {
            "seconds": round(floor_seconds, 2),
            "accountsPerSecond": round(invoiced / floor_seconds, 1),
            "requests": total,
            "requestsPerInvoicedAccount": round(total / invoiced, 3),
        },
        "model": {
            "cpuScale": {
                "run": round(cpu_scale(MEMORY_MB["run"], cpu_factor), 3),
                "worker": round(cpu_scale(MEMORY_MB["worker"], cpu_factor), 3),
            },
            "memoryMb": dict(MEMORY_MB),
            "batches": model["batches"],
            "firstBatchMs": model["firstBatchMs"],
            "laterBatchMs": model["laterBatchMs"],
            # with each environment's first batch as it was (its one-time costs): a short run's time
            "asRun": {
                "seconds": round(model["asRun"]["seconds"], 2),
                "accountsPerSecond": round(invoiced / model["asRun"]["seconds"], 1),
            },
            "meanBatchMs": {"product": model["product"]["batchMs"], "floor": model["floor"]["batchMs"]},
            "runHandlerSeconds": {
                "product": round(model["product"]["runHandlerSeconds"], 2),
                "floor": round(model["floor"]["runHandlerSeconds"], 2),
            },
        },
        "requestsPerInvoicedAccount": {
            **{k: round(v / invoiced, 3) for k, v in sorted(counts.items())},
            "total": round(total / invoiced, 3),
        },
        "requestsPerInvoicedAccountByOperation": {
            k: round(v / invoiced, 3) for k, v in sorted(product["operations"].items()) if v
        },
        "transactionConflictsPerInvoice": round(conflicts / invoiced, 4),
        # each kind's measured round trip in the workers: the modelled delay plus the servers' own time
        "roundTripMs": {
            k: round(v * 1000 / counts[k], 1) for k, v in sorted(product["spent"].items()) if counts[k] > 0
        },
        # The wall clock here, moto and the emulator included: moto answers one request at a time, so these
        # figures are bounded by this machine, not by the product (README, Speed and scale).
        "wallClock": {
            "runSeconds": round(product["seconds"], 2),
            "accountsPerSecond": round(invoiced / product["seconds"], 1),
            "floorSeconds": round(floor["seconds"], 2),
            "floorAccountsPerSecond": round(invoiced / floor["seconds"], 1),
            "runOverFloor": round(ratio, 3),
        },
        # CPU of the client processes per account: the product's own work versus replaying its bytes
        "clientCpuMsPerAccount": {
            "product": round(product["cpu"] * 1000 / invoiced, 2),
            "floor": round(floor["cpu"] * 1000 / invoiced, 2),
        },
        # Every process's CPU per account, product run and floor: the workers, the run handler, moto and the
        # emulator share this machine's cores, so cores / total is the most accounts/s it can reach.
        "cpuMsPerAccount": {
            "product": cpu_figures(
                invoiced, workers=product["cpu"], run=product["run_cpu"], **product["server_cpu"]
            ),
            "floor": cpu_figures(invoiced, workers=floor["cpu"], **floor["server_cpu"]),
        },
        "cores": os.cpu_count(),
    }


def cpu_figures(invoiced: int, **seconds: float) -> dict[str, float]:
    figures = {name: round(value * 1000 / invoiced, 1) for name, value in seconds.items()}
    total = sum(seconds.values()) * 1000 / invoiced
    return {
        **figures,
        "total": round(total, 1),
        "accountsPerSecondTheCoresAllow": round((os.cpu_count() or 1) * 1000 / total, 1) if total else 0.0,
    }


def goals(result: dict[str, Any]) -> dict[str, bool]:
    return {
        f"accounts/s >= {GOAL_ACCOUNTS_PER_SECOND:g}": result["accountsPerSecond"]
        >= GOAL_ACCOUNTS_PER_SECOND,
        f"run <= {GOAL_FLOOR_RATIO} x floor": result["runOverFloor"] <= GOAL_FLOOR_RATIO,
        f"requests/account <= {GOAL_REQUESTS_PER_ACCOUNT}": result["requestsPerInvoicedAccount"]["total"]
        <= GOAL_REQUESTS_PER_ACCOUNT,
    }


def positive(text: str) -> int:
    """A count of at least one (accounts, workers)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=positive, default=1000)
    parser.add_argument("--workers", type=positive, nargs="+", default=[1, 5, 20])
    parser.add_argument(
        "--latency",
        default="",
        help="round trips in ms over the defaults, e.g. 'dynamodb=8,ses=40,solusvm=80'; "
        f"'0' for none (defaults: {DEFAULT_LATENCY_MS})",
    )
    parser.add_argument(
        "--cpu-factor",
        type=float,
        default=1.0,
        help="Lambda's full vCPU over one core of this machine for the product's CPU (default 1: the same)",
    )
    parser.add_argument(
        "--worker-memory",
        type=int,
        default=WORKER_MEMORY_MB,
        help=f"the worker's memory in MB, which sets its CPU (default: the stack's {WORKER_MEMORY_MB})",
    )
    parser.add_argument(
        "--dilation",
        type=float,
        default=None,
        help="real waits this many times the modelled round trips (default: half the workers, at least 1)",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        latency = parse_latency(args.latency)
    except ValueError as error:
        parser.error(f"--latency: {error}")
    MEMORY_MB["worker"] = args.worker_memory
    if args.one:  # one configuration in this process (fresh servers, fresh clients)
        print(json.dumps(measure(args.accounts, args.workers[0], latency, args.cpu_factor, args.dilation)))
        return 0
    results = []
    for workers in args.workers:
        answer = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.invoicing",
                "--one",
                "--accounts",
                str(args.accounts),
                "--workers",
                str(workers),
                "--latency",
                ",".join(f"{k}={v:g}" for k, v in latency.items()),
                "--cpu-factor",
                str(args.cpu_factor),
                "--worker-memory",
                str(args.worker_memory),
                *(["--dilation", str(args.dilation)] if args.dilation else []),
            ],
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if answer.returncode != 0:
            print(answer.stderr, file=sys.stderr)
            return answer.returncode
        results.append(json.loads(answer.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report_all: dict[str, Any] = {
        "latencyMs": latency,
        "serversPerAccount": SERVERS_PER_ACCOUNT,
        "runs": results,
    }
    at_goal = [r for r in results if r["workers"] == GOALS_AT]
    if at_goal:
        report_all["goals"] = goals(at_goal[0])
    print(json.dumps(report_all, indent=2))
    return 0 if all(report_all.get("goals", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
