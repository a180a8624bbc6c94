"""Cold start: the CPU each function's import costs, against the CPU of importing its dependencies alone.

The ratio compares the function's import *plus* those dependencies (a function that defers boto3 to its
first request still pays for it then) with the dependencies alone: what the product adds to a cold start.
X-Ray (built on the first traced invocation) and Parameters (on the first read of a secret or price) are
not dependencies here: they are what the product used to add, and now defers.

Each figure is the median of RUNS fresh interpreters (a cold start is a new process) measuring
``time.process_time()`` around the import only, so the interpreter's own start-up is left out; a function's
three figures are measured in interleaved rounds, so a change in the machine's load weighs on all three. The
dependencies are what the function's first request needs from outside the product: boto3, PynamoDB,
requests, Jinja2 and Powertools (logger, metrics, plus the REST resolver for pages, the batch processor for
the worker). ``--importtime`` prints ``python -X importtime``'s ten heaviest modules of each function.

    python -m bench.coldstart [--runs 15] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 1.2

_COMMON = [
    "import boto3",
    "import botocore.client",
    "import pynamodb.models",
    "import pynamodb.transactions",
    "import requests",
    "import jinja2",
    "from aws_lambda_powertools import Logger, Metrics",
    "from aws_lambda_powertools.utilities.typing import LambdaContext",
]
_PAGES = [*_COMMON, "from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response"]
_BATCH = [
    *_COMMON,
    "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response",
]
# function -> (module file, its dependencies alone)
FUNCTIONS: dict[str, tuple[str, list[str]]] = {
    "signup": ("functions/signup/app.py", _PAGES),
    "verify": ("functions/verify/app.py", _PAGES),
    "sso": ("functions/sso/app.py", _PAGES),
    "payments": ("functions/payments/app.py", _PAGES),  # Stripe's webhook
    "automation": ("functions/automation/app.py", _COMMON),
    "automation-worker": ("functions/automation/worker.py", _BATCH),
}

_TIMED = """
import time
started = time.process_time()
{body}
print(time.process_time() - started)
"""
_LOAD = (
    "import importlib.util\n"
    "spec = importlib.util.spec_from_file_location('function_app', {path!r})\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)"
)


def environment() -> dict[str, str]:
    """What the stack gives a function (settings validated at import), pointed nowhere: nothing is called."""
    from local.stack import local_settings

    # as the stack starts: card payments off, no endpoint override (a caller's, such as the integration
    # tests' local stack in the same pytest session, would wire a different function)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "AWS_ENDPOINT_URL"))}
    env = {**inherited, **local_settings("https://billing.example.com", "https://solus.example.com")}
    # the warm-up run must leave its bytecode behind, or every run compiles the product's own modules
    # (and only them: the installed dependencies come compiled)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "cold",
            "AWS_SECRET_ACCESS_KEY": "cold",
            "INVOICE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
            # as deployed: tracing on (the Tracer patches boto3 and requests once X-Ray is imported)
            "POWERTOOLS_TRACE_DISABLED": "false",
            "POWERTOOLS_METRICS_DISABLED": "false",
        }
    )
    return env


def cpu_once(body: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(body=body)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def cpu_of(bodies: list[str], env: dict[str, str], runs: int) -> list[float]:
    """The median CPU of each body over ``runs`` fresh interpreters, the bodies' runs interleaved (one of
    each per round, in an order that rotates): a shared machine's load drifts over a minute, and measuring
    one body's runs after the other's put that drift into their ratio."""
    samples: list[list[float]] = [[] for _ in bodies]
    for round_ in range(runs):
        for offset in range(len(bodies)):
            index = (round_ + offset) % len(bodies)
            samples[index].append(cpu_once(bodies[index], env))
    return [statistics.median(s) for s in samples]


def heaviest(path: str, env: dict[str, str], count: int = 10) -> list[tuple[int, str]]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _LOAD.format(path=str(ROOT / path))],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|")
        rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:count]


def measure(runs: int, importtime: bool, only: list[str] | None = None) -> dict:
    env = environment()
    # compile every module once so the runs measure imports, not the first compilation
    for path, _ in FUNCTIONS.values():
        cpu_once(_LOAD.format(path=str(ROOT / path)), env)
    results: dict[str, dict[str, Any]] = {}
    for name, (path, dependencies) in FUNCTIONS.items():
        if only and name not in only:
            continue
        load = _LOAD.format(path=str(ROOT / path))
        # with the dependencies: what the first request will have imported too, the dependencies the
        # function left for it
        function, with_dependencies, alone = cpu_of(
            [load, load + "\n" + "\n".join(dependencies), "\n".join(dependencies)], env, runs
        )
        results[name] = {
            "importCpuMs": round(function * 1000, 1),
            "importAndDependenciesCpuMs": round(with_dependencies * 1000, 1),
            "dependenciesAloneCpuMs": round(alone * 1000, 1),
            "ratio": round(with_dependencies / alone, 3),
        }
        if importtime:
            results[name]["heaviestImportsUs"] = heaviest(path, env)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--only", nargs="*", choices=list(FUNCTIONS), help="measure only these functions")
    args = parser.parse_args(argv)
    results = measure(args.runs, args.importtime, args.only)
    report = {
        "runs": args.runs,
        "functions": results,
        "goal": f"ratio <= {GOAL_RATIO}",
        "met": all(r["ratio"] <= GOAL_RATIO for r in results.values()),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
