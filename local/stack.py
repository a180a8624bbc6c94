"""The whole product on one machine: moto server (AWS), the SolusVM emulator, and the settings that bind them.

Used by ``make run`` (with the gateway) and by the integration and browser tests (on free ports).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common" / "python"))

from postpay.limits import DEAD_LETTER_MAX_RECEIVE_COUNT, INVOICE_MAX_ATTEMPTS  # noqa: E402

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
INVOICE_QUEUE = "postpay-local-invoice-jobs"
EXPORT_BUCKET = "postpay-local-exports"
SOLUSVM_TOKEN = "local-solusvm-api-token"  # noqa: S105 - the emulator's own, local only
INVOICE_PARAMETERS_PATH = "/postpay/local/invoice/"
# What `make run` puts under INVOICE_PARAMETERS_PATH: an example seller, 20 % VAT on top, bank details.
EXAMPLE_INVOICE_PROFILE = {
    "seller/name": "Example Hosting Ltd",
    "seller/address": "1 Example Street\nLondon EC1A 1AA\nUnited Kingdom",
    "seller/tax-id": "GB123456789",
    "seller/email": "billing@example.com",
    "seller/website": "https://example.com",
    "tax/rate": "20",
    "tax/label": "VAT",
    "tax/mode": "exclusive",
    "tax/reverse-charge": "on",
    "payment-instructions": "Bank transfer to Example Hosting Ltd, IBAN GB33 BUKB 2020 1555 5555 55, "
    "BIC BUKBGB22. Put the invoice number in the reference.",
}
# localstripe accepts any key and signs its webhooks with the secret it is given: local only
STRIPE_SECRET_KEY = "sk_test_local"  # noqa: S105
STRIPE_WEBHOOK_SECRET = "whsec_local"  # noqa: S105


def _fake_credentials() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def local_settings(
    public_base_url: str,
    emulator_root: str,
    solusvm_timeout: float = 10.0,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every function gets: what the CDK stack sets in AWS, pointed at local parts."""
    return {
        "PUBLIC_BASE_URL": public_base_url,
        "TABLE_PREFIX": "postpay-local-",
        "MAIL_FROM": "billing@postpay.local",
        "SOLUSVM_URL": f"{emulator_root}/api/v1/",
        "SOLUSVM_TOKEN_SECRET": "postpay/local/solusvm-api-token",
        "SOLUSVM_TIMEOUT_SECONDS": str(solusvm_timeout),
        "SOLUSVM_LIMIT_GROUP_ID": "1",
        "SSO_URL_TEMPLATE": f"{emulator_root}/panel/login?token={{token}}",
        "TOKEN_PRICE_PARAMETER": "/postpay/local/token-price",
        "CURRENCY_PARAMETER": "/postpay/local/currency",
        "INVOICE_PARAMETERS_PATH": INVOICE_PARAMETERS_PATH,
        "TOS_URL": f"{public_base_url}/_local/terms/tos",
        "TOS_VERSION": "2026-01",
        "POSTPAY_TERMS_URL": f"{public_base_url}/_local/terms/postpay",
        "POSTPAY_TERMS_VERSION": "2026-01",
        "INVOICE_MAX_ATTEMPTS": str(INVOICE_MAX_ATTEMPTS),
        "EXPORT_BUCKET": EXPORT_BUCKET,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        **(extra or {}),
    }


def stripe_settings(localstripe_url: str) -> dict[str, str]:
    """Card payments through localstripe: what the stack sets once the operator has configured Stripe."""
    return {
        "STRIPE_SECRET_KEY_SECRET": "postpay/local/stripe-secret-key",
        "STRIPE_WEBHOOK_SECRET_SECRET": "postpay/local/stripe-webhook-secret",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_local",
        "STRIPE_API_BASE": localstripe_url,
        "STRIPE_JS_URL": f"{localstripe_url}/js.stripe.com/v3/",
    }


class MotoServer:
    """moto in server mode on 127.0.0.1, answering one request at a time.

    Clients still run concurrently; only moto's own processing is serialized. moto applies a
    TransactWriteItems by copying whole tables and restoring them on failure, so a failing transaction
    processed alongside another request would undo that request's writes: something DynamoDB never does.
    One request at a time keeps DynamoDB's per-request atomicity, which is what the product relies on."""

    def __init__(self, port: int = 0, *, keep_alive: bool = False) -> None:
        """``keep_alive``: connections stay open between requests (local.keepalive), as AWS's do; werkzeug's
        own handler closes each one after its answer."""
        import threading

        from local import moto_patches

        moto_patches.apply()  # a transaction copies each table once, not once per item

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        dispatcher = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def app(environ: dict, start_response: Any) -> Any:
            with lock:
                return list(dispatcher(environ, start_response))

        from werkzeug.serving import WSGIRequestHandler

        handler: type[WSGIRequestHandler] = MotoRequestHandler
        if keep_alive:
            from local.keepalive import keep_alive as keeping

            handler = keeping(MotoRequestHandler)
        self._server = make_server("127.0.0.1", port, app, threaded=True, request_handler=handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MotoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()


@dataclass
class Mail:
    to: list[str]
    source: str
    subject: str
    html: str
    attachments: dict[str, bytes] = field(default_factory=dict)  # file name -> content


def _raw_mail(message: Any) -> Mail:
    """A raw MIME message (one with attachments) as the mailbox shows it."""
    from email import policy
    from email.parser import BytesParser

    parsed = BytesParser(policy=policy.default).parsebytes(message.raw_data.encode("utf-8"))
    body = parsed.get_body(preferencelist=("html", "plain"))
    attachments = {
        part.get_filename() or "attachment": bytes(part.get_payload(decode=True))
        for part in parsed.iter_attachments()
    }
    return Mail(
        to=list(dict.fromkeys(message.destinations)),  # moto lists the Destination and the To header both
        source=message.source,
        subject=str(parsed["Subject"]),
        html=body.get_content() if body is not None else "",
        attachments=attachments,
    )


class LocalStack:
    def __init__(
        self,
        *,
        moto_port: int = 0,
        emulator_port: int = 0,
        public_base_url: str = "http://localhost:8080",
        auto_servers: int = 0,
        solusvm_timeout: float = 10.0,
        settings: dict[str, str] | None = None,
        invoice_profile: dict[str, str] | None = None,
        stripe_port: int = 0,
    ) -> None:
        self.moto_port = moto_port
        self.emulator_port = emulator_port
        self.public_base_url = public_base_url
        self.auto_servers = auto_servers
        self.solusvm_timeout = solusvm_timeout
        self.extra_settings = settings or {}
        self.invoice_profile = invoice_profile or {}
        self.stripe_port = stripe_port
        self.moto: Any = None
        self.emulator: Any = None
        self.stripe: Any = None

    def start(self) -> LocalStack:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        from local.solusvm_emulator import EmulatorServer

        self.moto = MotoServer(self.moto_port).start()
        host, port = self.moto.host, self.moto.port
        os.environ.update(_fake_credentials())
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        self.emulator = EmulatorServer(
            SOLUSVM_TOKEN, port=self.emulator_port, auto_servers=self.auto_servers
        ).start()
        from local.localstripe_server import LocalStripe

        self.stripe = LocalStripe(self.stripe_port).start()
        os.environ.update(self.settings())
        self.bootstrap()
        return self

    def stop(self) -> None:
        if self.stripe:
            self.stripe.stop()
        if self.emulator:
            self.emulator.stop()
        if self.moto:
            self.moto.stop()

    @property
    def aws_endpoint(self) -> str:
        return os.environ["AWS_ENDPOINT_URL"]

    def settings(self) -> dict[str, str]:
        return local_settings(
            self.public_base_url,
            self.emulator.root,
            self.solusvm_timeout,
            {**stripe_settings(self.stripe.url), **self.extra_settings},
        )

    def bootstrap(self) -> None:
        """What ``cdk deploy`` and the operator would have created: tables, SES identity, secret, prices."""
        from postpay.adapters.tables import create_tables

        create_tables(os.environ["TABLE_PREFIX"])
        bootstrap_services()
        put_invoice_profile(self.invoice_profile)
        import boto3

        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name=os.environ["STRIPE_SECRET_KEY_SECRET"], SecretString=STRIPE_SECRET_KEY)
        secrets.create_secret(
            Name=os.environ["STRIPE_WEBHOOK_SECRET_SECRET"], SecretString=STRIPE_WEBHOOK_SECRET
        )

    def mails(self) -> list[Mail]:
        """Every email sent through SES so far, oldest first (read from moto's store in this process)."""
        from moto.ses.models import ses_backends

        backend = ses_backends[ACCOUNT_ID][REGION]
        return [
            Mail(
                to=list(m.destinations.get("ToAddresses", [])),
                source=m.source,
                subject=m.subject,
                html=m.body,
            )
            if hasattr(m, "subject")
            else _raw_mail(m)
            for m in backend.sent_messages
            if hasattr(m, "subject") or hasattr(m, "raw_data")
        ]

    def worker(self, **kwargs: Any) -> Any:
        """The automation worker fed from the local queue, as Lambda's event source mapping would."""
        from local.events import load_function
        from local.poller import QueuePoller

        return QueuePoller(
            os.environ["INVOICE_QUEUE_URL"], load_function("automation", "worker").handler, **kwargs
        )

    def mails_to(self, address: str) -> list[Mail]:
        return [m for m in self.mails() if address in m.to]


def bootstrap_services() -> None:
    """Everything but the tables: SES identity, the SolusVM token secret, the price parameters, the queues,
    the exports bucket."""
    import boto3

    env = os.environ
    boto3.client("sesv2").create_email_identity(EmailIdentity=env["MAIL_FROM"])
    boto3.client("secretsmanager").create_secret(Name=env["SOLUSVM_TOKEN_SECRET"], SecretString=SOLUSVM_TOKEN)
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=env["TOKEN_PRICE_PARAMETER"], Value="0.001", Type="String", Overwrite=True)
    ssm.put_parameter(Name=env["CURRENCY_PARAMETER"], Value="USD", Type="String", Overwrite=True)
    boto3.client("s3").create_bucket(Bucket=env["EXPORT_BUCKET"])
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="postpay-local-invoice-jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=INVOICE_QUEUE,
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(DEAD_LETTER_MAX_RECEIVE_COUNT)}
            ),
        },
    )["QueueUrl"]
    os.environ["INVOICE_QUEUE_URL"] = queue


def put_invoice_profile(values: dict[str, str]) -> None:
    """Sets the invoice profile parameters (seller, tax, payment instructions) as an operator would."""
    import boto3

    ssm = boto3.client("ssm")
    for name, value in values.items():
        ssm.put_parameter(
            Name=os.environ["INVOICE_PARAMETERS_PATH"] + name, Value=value, Type="String", Overwrite=True
        )
