"""``make invoice DATE=2022-11-01`` and ``make op PAYLOAD='{…}'``: operator payloads against ``make run``.

Invokes the automation function with ``{"invoicingDate": DATE}`` (``DRY_RUN=1`` adds ``"dryRun": true``),
or with any operator payload given as ``PAYLOAD='{"rebill": {"client": 2, "period": "2022-10"}}'``,
follows the run it starts with ``{"runStatus": …}`` until the local worker has finished it (a progress bar
on stderr), prints the answer as JSON on stdout, and exits non-zero when the payload is refused. The ports
come from the state file ``make run`` writes (local/state.py), so any ``PORT``/``MOTO_PORT`` works.
``NOW=2026-12-01T00:05:00Z`` moves the function's clock, so a user who signed up today can be invoiced
for the current month in a local demo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

from local import state
from local.events import LambdaContext, load_function
from local.stack import INVOICE_QUEUE, _fake_credentials, local_settings, stripe_settings


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


def main() -> int:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    parser = argparse.ArgumentParser(description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--date", help="invoicing date: the month before it is invoiced")
    what.add_argument("--payload", help="any operator payload, as JSON (rebill, runStatus, markPaid)")
    what.add_argument(
        "--from-env",
        action="store_true",
        help="read PAYLOAD or DATE, DRY_RUN and NOW from the environment (how the Makefile passes them: "
        "no shell quoting can break them)",
    )
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--now", default="", help="pretend the current time is this (ISO 8601)")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    if args.from_env:
        args.payload = os.environ.get("PAYLOAD") or None
        args.date = None if args.payload else os.environ.get("DATE") or None
        args.dry_run = args.dry_run or bool(os.environ.get("DRY_RUN"))
        args.now = args.now or os.environ.get("NOW", "")
        if not args.payload and not args.date:
            parser.error("--from-env needs PAYLOAD or DATE in the environment")

    moment = None
    if args.now:
        try:
            moment = datetime.fromisoformat(args.now.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            print(
                f"refused: NOW={args.now!r} is not an ISO 8601 time (like 2026-12-01T00:05:00Z)",
                file=sys.stderr,
            )
            return 1
    running = state.read()
    if running is not None:
        base, endpoint, emulator = running["publicBaseUrl"], running["awsEndpoint"], running["emulatorRoot"]
        stripe = running.get("stripeUrl") or f"http://127.0.0.1:{os.environ.get('STRIPE_PORT', '8420')}"
    else:  # no state file (an older make run, or another checkout's): the ports from the environment
        port, moto_port, emulator_port, stripe_port = (
            os.environ.get(k, d)
            for k, d in (
                ("PORT", "8080"),
                ("MOTO_PORT", "5000"),
                ("EMULATOR_PORT", "8081"),
                ("STRIPE_PORT", "8420"),
            )
        )
        base, endpoint = f"http://localhost:{port}", f"http://127.0.0.1:{moto_port}"
        emulator, stripe = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{stripe_port}"
    os.environ.update(_fake_credentials())
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    # the daily run's dunning charges and the refund payload go to localstripe
    os.environ.update(local_settings(base, emulator, extra=stripe_settings(stripe)))
    import boto3
    import botocore.exceptions

    try:
        os.environ["INVOICE_QUEUE_URL"] = boto3.client("sqs").get_queue_url(QueueName=INVOICE_QUEUE)[
            "QueueUrl"
        ]
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ClientError):
        print(f"the local stack is not running at {endpoint}: start it with `make run`", file=sys.stderr)
        return 2

    automation = load_function("automation")
    if moment is not None:
        automation.container.__dict__["clock"] = FixedClock(moment)

    def invoke(payload: dict) -> dict:
        return automation.handler(payload, LambdaContext(function_name="automation"))

    try:
        payload = json.loads(args.payload) if args.payload else {"invoicingDate": args.date}
    except json.JSONDecodeError as error:
        print(
            f"refused: the payload is not valid JSON ({error.msg} at line {error.lineno} "
            f"column {error.colno}): {args.payload[:200]}",
            file=sys.stderr,
        )
        return 1
    try:
        if args.dry_run:
            payload["dryRun"] = True
        result = invoke(payload)
    except (ValueError, TypeError) as error:  # a PayloadError: the payload is refused
        print(refusal(str(error)), file=sys.stderr)
        return 1
    if "runId" not in result or "runStatus" in payload:  # a payment, a listing, a run's page: as it is
        show(result)
        return 0
    joined = {k: result[k] for k in ("joined", "note") if k in result}
    if joined.get("note"):  # a joined run: it bills nobody enrolled since the first request
        print(f"note: {joined['note']}", file=sys.stderr)
    result = {**follow(result, invoke, args.timeout), **joined}
    if result.get("dryRun"):  # the report: every page of the run's accounts, as an operator reads it on AWS
        accounts = list(result.pop("accounts", []))
        while result.get("next") is not None:
            page = invoke({"runStatus": result["runId"], "after": result["next"]})
            accounts += page["accounts"]
            result["next"] = page["next"]
        result["accounts"] = accounts
    result.pop("next", None)
    show(result)
    return 0 if result.get("finished") and not result.get("failed") else 3


def refusal(message: str) -> str:
    """ "refused: …" once: "rebill refused: …" already says it."""
    return message if "refused" in message.split(":", 1)[0] else f"refused: {message}"


def follow(result: dict, invoke: Callable[[dict], dict], timeout: float) -> dict:
    """Polls the run until the worker has finished it, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout
    columns = (TextColumn("run {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(result["runId"], total=result.get("queued"), completed=done(result))
        while not result.get("finished") and time.monotonic() < deadline:
            time.sleep(1)
            result = invoke({"runStatus": result["runId"]})
            progress.update(task, total=result.get("queued"), completed=done(result))
    return result


def show(result: dict) -> None:
    """Readable JSON: highlighted on a terminal, plain (and still parseable) when piped."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print_json(text)
    else:
        print(text, flush=True)


def done(summary: dict) -> int:
    keys = ("invoiced", "alreadyInvoiced", "nothingToBill", "failed", "wouldInvoice")
    return sum(summary.get(k, 0) for k in keys)


if __name__ == "__main__":
    sys.exit(main())
