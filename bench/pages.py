"""Page latency: the page handlers in this process (no network to AWS: moto in-process through mock_aws, the
SolusVM emulator on loopback), each route requested REPEAT times by a signed-in client with INVOICES
invoices. Reports p50 / p99 per route and the DynamoDB requests each makes.

    python -m bench.pages [--repeat 200] [--invoices 24]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

PASSWORD = "a long enough passphrase"  # noqa: S105 - the bench's own client
ROUTES = ["/", "/signup", "/login", "/dashboard", "/invoices", "/invoices/{number}", "/account"]


class DynamoRequests:
    """Counts AWS API calls by operation (mock_aws answers them in-process, below botocore)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        import botocore.client

        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        counts = self.counts

        def counted(client: Any, operation: str, params: dict) -> Any:
            counts[f"{client.meta.service_model.service_name}:{operation}"] += 1
            return original(client, operation, params)

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[attr-defined]


def seed(invoices: int) -> tuple[str, str]:
    """One enrolled client with a SolusVM user, three servers and ``invoices`` monthly invoices."""
    import requests

    from local.stack import SOLUSVM_TOKEN
    from postpay.adapters.billing_store import BillingStore
    from postpay.adapters.tables import AccountItem, RunItem
    from postpay.models import Invoice, InvoiceLine, InvoiceStatus
    from postpay.security import hash_password

    emulator = os.environ["SOLUSVM_URL"]
    root = emulator.split("/api/")[0]
    email = "pages@example.com"
    user = requests.post(
        f"{emulator}users",
        json={"email": email, "password": "x" * 16, "status": "active", "billing_user_id": 1},
        headers={"Authorization": f"Bearer {SOLUSVM_TOKEN}"},
        timeout=5,
    ).json()["data"]
    for plan in (1, 2, 1):
        requests.post(
            f"{root}/_emulator/servers",
            json={"user_id": user["id"], "plan_id": plan, "created_at": "2020-01-01T00:00:00+00:00"},
            timeout=5,
        ).raise_for_status()
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    AccountItem(
        email,
        client_id=1,
        name="Page Bench",
        company="",
        password_hash=hash_password(PASSWORD),
        status="enrolled",
        created_at=long_ago,
        verified_at=long_ago,
        enrolled_at=long_ago,
        solus_user_id=user["id"],
    ).save()
    store, now = BillingStore(), datetime.now(UTC)
    number = ""
    for month in range(invoices):
        start = date(2022 + month // 12, month % 12 + 1, 1)
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        line = InvoiceLine(
            server_id=1,
            name="web-1",
            plan="Small",
            hours=744,
            tokens=5000,
            unit_price=Decimal("0.001"),
            amount=Decimal("5.00"),
            deleted=False,
        )

        def build(n: int, start: date = start, end: date = end, line: InvoiceLine = line) -> Invoice:
            return Invoice(
                number=f"INV-{n:06d}",
                client_id=1,
                email=email,
                solus_user_id=user["id"],
                period_start=start,
                period_end=end,
                timezone="UTC",
                currency="USD",
                token_price=Decimal("0.001"),
                lines=(line,),
                total=Decimal("5.00"),
                status=InvoiceStatus.UNPAID,
                issued_on=end + timedelta(days=1),
                due_on=end + timedelta(days=15),
                usage="{}",
                run_id="bench",
            )

        run = f"bench-{month}"  # one outcome per (run, client): a run per month, as in production
        RunItem(run, trigger="manual", period="{}", state="queued", started_at=now, updated_at=now).save()
        number = store.issue(build, run_id=run, now=now, email_lease=timedelta(minutes=5)).number
    return email, number


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--invoices", type=int, default=24)
    args = parser.parse_args(argv)

    import logging

    from local.solusvm_emulator import EmulatorServer
    from local.stack import SOLUSVM_TOKEN, _fake_credentials, bootstrap_services, local_settings
    from moto import mock_aws

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(_fake_credentials())
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws(), EmulatorServer(SOLUSVM_TOKEN) as emulator:
        os.environ.update(
            local_settings("http://localhost:8080", emulator.root, extra={"POWERTOOLS_LOG_LEVEL": "ERROR"})
        )
        from postpay.adapters.tables import create_tables

        create_tables(os.environ["TABLE_PREFIX"])
        bootstrap_services()
        email, number = seed(args.invoices)
        from local.events import load_function
        from tests.browser import Browser

        handlers = {name: load_function(name).handler for name in ("signup", "verify", "sso")}
        browser = Browser(handlers)
        with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints metrics (EMF) to stdout
            form = browser.get("/login")
            signed_in = browser.post("/login", {"email": email, "password": PASSWORD}, csrf_from=form)
            assert signed_in.status in (302, 303), signed_in.status
            requests = DynamoRequests()
            requests.install()
            report: dict[str, Any] = {}
            for route in ROUTES:
                path = route.format(number=number)
                assert browser.get(path).status == 200, path  # warm: templates compiled, clients built
                requests.counts.clear()
                samples = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    page = browser.get(path)
                    samples.append((time.perf_counter() - started) * 1000)
                    assert page.status == 200, (path, page.status)
                dynamodb = {
                    k.split(":", 1)[1]: round(v / args.repeat, 2)
                    for k, v in sorted(requests.counts.items())
                    if k.startswith("dynamodb:")
                }
                report[route] = {
                    "p50Ms": round(statistics.median(samples), 2),
                    "p99Ms": round(percentile(samples, 0.99), 2),
                    "dynamodbRequests": dynamodb,
                    "otherRequests": {
                        k: round(v / args.repeat, 2)
                        for k, v in sorted(requests.counts.items())
                        if not k.startswith("dynamodb:")
                    },
                }
    print(json.dumps({"repeat": args.repeat, "invoicesShown": args.invoices, "routes": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
