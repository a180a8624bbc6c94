"""``make run``: the whole product on localhost until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import time
import warnings
from datetime import UTC, date, datetime

from local import state
from local.gateway import serve
from local.stack import EXAMPLE_INVOICE_PROFILE, STRIPE_WEBHOOK_SECRET, LocalStack


def main() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", "5000")))
    parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("EMULATOR_PORT", "8081")))
    parser.add_argument("--stripe-port", type=int, default=int(os.environ.get("STRIPE_PORT", "8420")))
    args = parser.parse_args()

    base = f"http://localhost:{args.port}"
    stack = LocalStack(
        moto_port=args.moto_port,
        emulator_port=args.emulator_port,
        stripe_port=args.stripe_port,
        public_base_url=base,
        auto_servers=3,
        settings={"SIGNUP_MIN_RESPONSE_MS": "300"},
        invoice_profile=EXAMPLE_INVOICE_PROFILE,
    ).start()
    server = serve(stack, args.port)
    # localstripe sends its signed events to the webhook route, as Stripe would to the deployed site
    stack.stripe.register_webhook(f"{base}/payments/stripe", STRIPE_WEBHOOK_SECRET)
    worker = stack.worker().start()
    state_file = state.write(
        {
            "port": args.port,
            "publicBaseUrl": base,
            "motoPort": stack.moto.port,
            "awsEndpoint": stack.aws_endpoint,
            "emulatorRoot": stack.emulator.root,
            "stripeUrl": stack.stripe.url,
            "startedAt": datetime.now(UTC).isoformat(),
        }
    )
    today = datetime.now(UTC).date()
    first = date(today.year + today.month // 12, today.month % 12 + 1, 1)  # the first of next month
    print(
        "\nPost-Pay is running locally:\n"
        f"  site              {base}/\n"
        f"  local mailbox     {base}/_local/mail\n"
        f"  SolusVM emulator  {stack.emulator.url}  (state: {stack.emulator.root}/_emulator/state)\n"
        f"  AWS (moto server) {stack.aws_endpoint}\n"
        f"  Stripe (localstripe) {stack.stripe.url}  (test cards: 4242 4242 4242 4242 pays, "
        "4000 0000 0000 0341 declines)\n"
        f"  ports recorded in {state_file} (make invoice and make op read it)\n"
        "Invoice this month for whoever signed up today (the clock moved to the 1st of next month):\n"
        f"  make invoice DATE={first} NOW={first}T00:05:00Z\n"
        'Any operator payload:  make op PAYLOAD=\'{"listInvoices": {"status": "unpaid"}}\'\n'
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        time.sleep(0.2)
    state.remove()
    server.shutdown()
    worker.stop()
    stack.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
