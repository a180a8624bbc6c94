"""``python -m tests.integration.seed_local``: one enrolled account with October 2022 usage in the running
``make run`` (found through its state file); prints the account's email, client id and SolusVM user id."""

from __future__ import annotations

import json
import os
import warnings
from types import SimpleNamespace

from local import state
from local.events import load_function
from local.stack import _fake_credentials, local_settings


def main() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    running = state.read()
    assert running is not None, "make run is not running"
    os.environ.update(_fake_credentials())
    os.environ["AWS_ENDPOINT_URL"] = running["awsEndpoint"]
    os.environ.update(local_settings(running["publicBaseUrl"], running["emulatorRoot"]))
    from tests.integration.billing_helpers import enrolled_account
    from tests.integration.test_invoicing import OCTOBER_SERVERS

    root = running["emulatorRoot"]
    stack = SimpleNamespace(emulator=SimpleNamespace(root=root, url=f"{root}/api/v1/"))
    account = enrolled_account(stack, {"verify": load_function("verify")}, servers=OCTOBER_SERVERS)  # type: ignore[arg-type]
    print(json.dumps({"email": account.email, "client": account.client_id}))


if __name__ == "__main__":
    main()
