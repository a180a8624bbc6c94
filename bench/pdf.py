"""Invoice PDF cost: CPU per PDF in one process (what the worker pays per invoiced account), the first PDF
(which parses the fonts) apart from the rest, for a Latin-script invoice and one that needs the CJK fallback;
and for Latin-script invoices that differ each time (buyer, address, servers, total), as in a run, where a
cache keyed by what one invoice prints would miss.

    python -m bench.pdf [--repeat 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from dataclasses import replace
from datetime import date
from decimal import Decimal

from postpay.billing.pdf import invoice_pdf
from postpay.models import Buyer, Invoice, InvoiceLine, InvoiceStatus, Seller

D = Decimal
LATIN = Buyer(name="Ada", company="Engines", email="ada@example.com", address=("2 Side St",), tax_id="X1")
CJK = Buyer(name="山田太郎", company="株式会社サンプル", address=("東京都千代田区1-1", "Seoul 서울"))


def invoice(buyer: Buyer, servers: int = 3) -> Invoice:
    lines = tuple(
        InvoiceLine(
            server_id=n,
            name=f"web-{n}",
            plan="S",
            hours=720,
            tokens=1000,
            unit_price=D("0.001"),
            amount=D("1.00"),
        )
        for n in range(1, servers + 1)
    )
    return Invoice(
        number="INV-000001",
        client_id=7,
        email="ada@example.com",
        solus_user_id=3,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 10, 31),
        timezone="UTC",
        currency="USD",
        token_price=D("0.001"),
        lines=lines,
        total=D("3.60"),
        status=InvoiceStatus.UNPAID,
        issued_on=date(2026, 11, 1),
        due_on=date(2026, 11, 15),
        usage="{}",
        run_id="r",
        seller=Seller(name="Example Hosting Ltd", address=("1 Main St", "London"), tax_id="GB123456789"),
        buyer=buyer,
        tax_rate=D("20"),
        tax_label="VAT",
        tax=D("0.60"),
        payment_instructions="Bank transfer to GB00 0000",
    )


def varied(seed: int) -> Invoice:
    rng = random.Random(seed)

    def word(length: int) -> str:
        return rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=length - 1))

    buyer = Buyer(
        name=f"{word(5)} {word(8)}",
        company=f"{word(7)} Ltd",
        email=f"{word(6).lower()}@example.com",
        address=(f"{rng.randint(1, 999)} {word(6)} Road", word(9)),
        tax_id=f"{word(2).upper()}{rng.randint(10**8, 10**9)}",
    )
    document = invoice(buyer, servers=rng.randint(1, 6))
    return replace(document, number=f"INV-{seed:06d}", total=D(rng.randint(1, 99999)) / 100)


def cpu_ms(document: Invoice, today: date) -> float:
    start = time.process_time()
    invoice_pdf(document, today=today)
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    today = date(2026, 11, 2)
    print(f"{'invoice':<8} {'first PDF':>10} {'then p50':>9} {'mean':>7}  (CPU ms, one process)")
    for label, buyer in (("latin", LATIN), ("cjk", CJK)):
        document = invoice(buyer)
        first = cpu_ms(document, today)
        rest = [cpu_ms(document, today) for _ in range(args.repeat)]
        print(f"{label:<8} {first:>10.1f} {statistics.median(rest):>9.1f} {statistics.fmean(rest):>7.1f}")
    rest = [cpu_ms(varied(seed), today) for seed in range(args.repeat)]
    print(f"{'varied':<8} {'':>10} {statistics.median(rest):>9.1f} {statistics.fmean(rest):>7.1f}")


if __name__ == "__main__":
    main()
