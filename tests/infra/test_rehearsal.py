"""A first deploy, rehearsed: the README's `cdk deploy` and its operator steps, then a person's whole
journey at the address `SiteUrl` gives, through API Gateway as the template configures it.

Every resource comes from the synthesized template (tests/infra/rehearsal.py); every function runs from its
cdk.out asset, with the layer asset and nothing else on its path, and with its template environment."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from local.poller import sqs_event
from local.solusvm_emulator import EmulatorServer
from local.stack import MotoServer
from tests.browser import Browser, Page
from tests.infra.conftest import ROOT, VARIANTS
from tests.infra.rehearsal import (
    ACCOUNT,
    REGION,
    Deployment,
    Function,
    FunctionError,
    Gateway,
    LambdaService,
    locked_runtime_distributions,
)

SOLUSVM_TOKEN = "rehearsal-solusvm-token"
STRIPE_SECRET_KEY = "sk_test_rehearsal"
STRIPE_WEBHOOK_SECRET = "whsec_rehearsal"
PASSWORD = "a long enough passphrase for the rehearsal"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lambda_service() -> Iterator[LambdaService]:
    service = LambdaService()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[str]:
    """localstripe in a process of its own (one per process: the integration tests' stack has theirs)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "local.localstripe_server"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"localstripe did not start: {url!r}"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(SOLUSVM_TOKEN) as server:
        yield server


def sent_mails(to: str) -> list[tuple[str, str]]:
    """(subject, html) of every email SES accepted for this address, oldest first (simple or raw MIME)."""
    import email
    from email import policy

    from moto.ses.models import ses_backends

    found = []
    for m in ses_backends[ACCOUNT][REGION].sent_messages:
        destinations = m.destinations
        addresses = destinations.get("ToAddresses", []) if isinstance(destinations, dict) else destinations
        if to not in addresses:
            continue
        if hasattr(m, "subject"):
            found.append((m.subject, m.body))
            continue
        parsed = email.message_from_string(m.raw_data, policy=policy.default)
        html = parsed.get_body(preferencelist=("html",))
        found.append((str(parsed["Subject"]), html.get_content() if html is not None else ""))
    return found


class Journey:
    """A browser at the deployed site that checks every page it sees: no gateway 403, no 404, and every
    link, form action and Location under the site's address."""

    def __init__(self, browser: Browser, site_url: str) -> None:
        self.browser = browser
        self.site = site_url
        self.host = urlsplit(site_url).netloc
        self.base = urlsplit(site_url).path  # "/live/" or "/"
        self.visited: set[str] = set()

    def on_site(self, link: str) -> bool:
        parts = urlsplit(link)
        return not parts.netloc or parts.netloc == self.host

    def check(self, page: Page, what: str) -> Page:
        assert page.status not in (403, 404), f"{what}: {page.status} {page.body[:300]}"
        assert page.status < 500, f"{what}: {page.status} {page.body[:300]}"
        links = [unescape(x) for x in re.findall(r'(?:href|action)="([^"]*)"', page.body)]
        if page.location:
            links.append(page.location)
        for link in links:
            if link.startswith(("#", "mailto:")) or not self.on_site(link):
                continue
            path = urlsplit(link).path
            assert path.startswith(self.base), f"{what}: {link!r} leaves {self.base}"
        for link in re.findall(r'<a [^>]*href="([^"]*)"', page.body):
            link = unescape(link)
            if self.on_site(link) and not link.startswith("#") and link not in self.visited:
                self.visited.add(link)
                target = self.browser.get(link)
                assert target.status not in (403, 404), f"{what}: the link {link!r} answers {target.status}"
        return page

    def get(self, url: str) -> Page:
        return self.check(self.browser.get(url), f"GET {url}")

    def submit(self, page: Page, action_path: str, fields: dict[str, str]) -> Page:
        """Submits the page's form whose action is the site's ``action_path``, as the browser would."""
        action = self.base.rstrip("/") + action_path
        assert f'action="{action}"' in page.body, f"no form posting to {action}"
        return self.check(self.browser.post(action, fields, csrf_from=page), f"POST {action}")

    def follow(self, page: Page) -> Page:
        assert page.status in (302, 303), page.status
        return self.get(page.location)


@pytest.mark.parametrize("variant", ["stage-url", "existing-ses-identity", "custom-domain"])
def test_a_first_deploy_works_at_its_site_url(
    synth, moto, emulator, stripe_api, lambda_service, variant, tmp_path: Path
):
    # Given the stack as `cdk deploy` creates it from the synthesized template …
    built = synth(variant)
    deployment = Deployment(
        built.json, built.outdir, stack_name=built.stack.stack_name, endpoint=f"http://127.0.0.1:{moto.port}"
    )
    if variant == "existing-ses-identity":  # the sender domain's identity is already there
        ses = deployment.client("sesv2")
        if "example.com" not in [i["IdentityName"] for i in ses.list_email_identities()["EmailIdentities"]]:
            ses.create_email_identity(EmailIdentity="example.com")
    deployment.create()
    # (the functions run here with this machine's build of the locked packages: the layer is arm64's, so
    # first, the layer holds every locked runtime dependency)
    missing = (
        locked_runtime_distributions(ROOT / "build" / "requirements.txt") - deployment.layer_distributions()
    )
    assert not missing, f"the layer lacks {sorted(missing)}"
    # … and the README's operator step: the SolusVM API token in the secret the stack names
    deployment.client("secretsmanager").put_secret_value(
        SecretId=deployment.output("SolusVmTokenSecret"), SecretString=SOLUSVM_TOKEN
    )
    site = deployment.output("SiteUrl")
    if variant == "custom-domain":
        assert site == "https://billing.example.com/"
    else:
        assert site == f"https://{deployment.api_id}.execute-api.{REGION}.amazonaws.com/live/"
    provider = {  # the provider's SolusVM: the emulator stands in for it
        "SOLUSVM_URL": emulator.url,
        "SSO_URL_TEMPLATE": f"{emulator.root}/panel/login?token={{token}}",
        # and an export of any size goes to the template's bucket (behind a presigned link), not inline
        "EXPORT_INLINE_BYTES": "0",
    }
    cards = bool(VARIANTS[variant].get("stripePublishableKey"))
    if cards:
        # the README's card payments step: Stripe's keys in the secrets the stack names; Stripe itself is
        # localstripe here, as SolusVM is the emulator
        secrets = deployment.client("secretsmanager")
        secrets.put_secret_value(
            SecretId=deployment.output("StripeSecretKeySecret"), SecretString=STRIPE_SECRET_KEY
        )
        secrets.put_secret_value(
            SecretId=deployment.output("StripeWebhookSecretSecret"), SecretString=STRIPE_WEBHOOK_SECRET
        )
        provider["STRIPE_API_BASE"] = stripe_api
    with deployment.functions(provider, tmp_path, lambda_service) as functions:
        # When a person opens SiteUrl and goes through sign-up, the email link, the terms, the dashboard,
        # the control panel and (after the 1st) their invoice
        gateway = Gateway(deployment, functions, site)
        origin = f"https://{urlsplit(site).netloc}"
        journey = Journey(Browser({}, origin=origin, gateway=gateway, source_ip="198.51.100.7"), site)
        email = f"ada-{uuid.uuid4().hex[:8]}@example.org"
        walk(journey, email, panel=emulator.root)
        invoice_month(deployment, functions, emulator, lambda_service, email)
        # Then the invoice is listed, opens, and its email links to it under the site's address
        invoices = journey.get(site + "invoices")
        [number] = re.findall(r"INV-\d{6}", invoices.body)[:1]
        journey.get(site + f"invoices/{number}")
        [(_, html)] = [m for m in sent_mails(email) if number in m[0] or number in m[1]][-1:]
        link = unescape(re.search(r'href="([^"]+/invoices/[^"]+)"', html).group(1))
        assert link == site + f"invoices/{number}"
        invoice_page = journey.get(link)
        if cards:
            assert f'href="{journey.base}invoices/{number}/pay"' in invoice_page.body, "Pay now"
        # And the gateway itself answers what is outside the site, as API Gateway does
        if urlsplit(site).path == "/live/":
            assert journey.browser.get(f"{origin}/signup").status == 403  # no stage: not the site
        assert journey.browser.get(site + "no-such-page").status == 404  # the product's own 404 page
        # And the operator's desk works on the deployed stack: find, export, void, re-bill
        rebilled = operate(deployment, functions, email, number)
        if cards:  # and Stripe's webhook pays the re-billed invoice (the void one cannot be paid)
            webhook(journey, gateway, site, rebilled)


def stripe_signature(payload: str, secret: str) -> str:
    """The Stripe-Signature header as Stripe computes it: HMAC-SHA256 of "<timestamp>.<payload>"."""
    stamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def webhook(journey: Journey, gateway: Gateway, site: str, number: str) -> None:
    """Stripe's webhook at `<SiteUrl>payments/stripe` (README): the payments function from its asset, behind
    API Gateway's binary media types. A forged or unsigned event is refused 400 and changes nothing; the
    signed one marks the invoice paid, once."""
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": {"id": f"pi_{uuid.uuid4().hex[:24]}", "metadata": {"invoice": number}}},
        }
    )
    url = site + "payments/stripe"

    def post(signature: str | None) -> dict:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return gateway("POST", url, headers, payload.encode(), "54.187.174.169")

    forged = post(stripe_signature(payload, "whsec_not_the_signing_secret"))
    assert forged["statusCode"] == 400, forged
    assert post(None)["statusCode"] == 400
    assert journey.get(site + f"invoices/{number}").has("Unpaid"), "a refused event changes nothing"
    accepted = post(stripe_signature(payload, STRIPE_WEBHOOK_SECRET))
    assert accepted["statusCode"] == 200, accepted
    assert json.loads(accepted["body"])["message"] == "paid"
    replayed = post(stripe_signature(payload, STRIPE_WEBHOOK_SECRET))
    assert replayed["statusCode"] == 200 and json.loads(replayed["body"])["message"] == "duplicate"
    paid = journey.get(site + f"invoices/{number}")
    assert paid.has("Paid") and "by card" in paid.body and f"invoices/{number}/pay" not in paid.body


def walk(journey: Journey, email: str, *, panel: str) -> None:
    site = journey.site
    landing = journey.get(site)
    assert f'href="{journey.base}signup"' in landing.body
    signup = journey.get(site + "signup")
    fields = {"name": "Ada Lovelace", "company": "Analytical Engines", "email": email}
    sent = journey.follow(journey.submit(signup, "/signup", {**fields, "password": PASSWORD}))
    assert sent.status == 200 and sent.has("Check your inbox")
    # the email link opens a working page at the site's address
    [(_, html)] = [m for m in sent_mails(email) if "verify?token=" in m[1]]
    link = unescape(re.search(r'href="([^"]+/verify\?token=[^"]+)"', html).group(1))
    assert link.startswith(site + "verify?token="), link
    terms = journey.get(link)
    boxes = dict.fromkeys(re.findall(r'type="checkbox" id="[^"]+" name="([^"]+)"', terms.body), "yes")
    assert boxes, "the terms page asks to accept the terms"
    fields = {"token": terms.field("token"), "password": PASSWORD, **boxes}
    enrolled = journey.submit(terms, "/verify", fields)
    if enrolled.status in (302, 303):  # post-redirect-get: the outcome page, under the site's address
        enrolled = journey.follow(enrolled)
    assert enrolled.status == 200 and "ready" in enrolled.body.lower(), enrolled.body[:500]
    dashboard = journey.get(site + "dashboard")
    assert dashboard.has(email)
    # the control panel: a one-time login into SolusVM, outside the site
    sso = journey.submit(dashboard, "/sso", {})
    assert sso.status in (302, 303) and sso.location.startswith(panel + "/panel/login?token="), sso.location
    assert requests.get(sso.location, timeout=10).status_code == 200


def invoice_month(
    deployment: Deployment,
    functions: dict[str, Function],
    emulator: EmulatorServer,
    lambda_service: LambdaService,
    email: str,
) -> None:
    """Last month is invoiced by the automation function and the worker, run from their assets."""
    # the client enrolled last month and ran a server then
    today = datetime.now(UTC)
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=2, hour=0, minute=0)
    accounts = deployment.table("accounts")
    dynamodb = deployment.client("dynamodb")
    item = dynamodb.get_item(TableName=accounts, Key={"email": {"S": email}})["Item"]
    user_id = int(item["solus_user_id"]["N"])
    dynamodb.update_item(
        TableName=accounts,
        Key={"email": {"S": email}},
        UpdateExpression="SET enrolled_at = :at",
        ExpressionAttributeValues={":at": {"S": last_month.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")}},
    )
    requests.post(
        f"{emulator.root}/_emulator/servers",
        json={"user_id": user_id, "created_at": last_month.isoformat()},
        timeout=10,
    ).raise_for_status()
    run = functions[deployment.function_id("app.handler", "AutomationRun")]
    worker = functions[deployment.function_id("worker.handler", "AutomationWorker")]
    first = date(today.year, today.month, 1).isoformat()
    with pytest.raises(FunctionError, match="invoicingDate"):
        run.invoke({"invoicingDate": "2022-13-01"})  # a refused payload fails the invoke, saying why
    started = run.invoke({"invoicingDate": first})
    # the invoke answers at once; the function queues the jobs in an asynchronous invocation of itself
    assert started["state"] == "queuing" and not started["joined"]
    assert run.invoke({"invoicingDate": first})["runId"] == started["runId"], "a repeated request joins"
    assert lambda_service.drain() == 1
    status = finish(deployment, run, worker, started["runId"])
    assert status["failed"] == 0 and status["invoiced"] >= 1, status
    # a dry run of the same month afterwards: through the workers, its report read page by page
    dry = run.invoke({"invoicingDate": first, "dryRun": True})
    assert dry["dryRun"] and lambda_service.drain() == 1
    report = finish(deployment, run, worker, dry["runId"])
    entries = [a for a in report["accounts"] if a["outcome"] == "already_invoiced"]
    assert entries and report["next"] is None and report["alreadyInvoiced"] == report["queued"]
    # and the daily schedule's own payload (from the template) is understood
    [schedule] = deployment.of_type("AWS::Scheduler::Schedule").values()
    payload = schedule["Properties"]["Target"]["Input"].replace(
        "<aws.scheduler.scheduled-time>", today.strftime("%Y-%m-%dT00:05:00Z")
    )
    assert run.invoke(json.loads(payload))["date"] == today.date().isoformat()


def finish(deployment: Deployment, run: Function, worker: Function, run_id: str) -> dict:
    """Feeds the run's jobs to the worker as Lambda's SQS event source would, until the run is finished."""
    queue = deployment.jobs_queue()
    sqs = deployment.client("sqs")
    for _ in range(50):
        status = run.invoke({"runStatus": run_id})
        if status["finished"]:
            return status
        messages = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=5, AttributeNames=["All"], VisibilityTimeout=30
        ).get("Messages", [])
        if not messages:
            continue
        answer = worker.invoke(sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:jobs"))
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
    raise AssertionError(f"run {run_id} did not finish: {status}")


def operate(deployment: Deployment, functions: dict[str, Function], email: str, number: str) -> str:
    """The operator's payloads against the template's resources: the account, a listing, an export to the
    exports bucket, a void with its credit note, and the void month billed again once, with a new number
    (returned)."""
    run = functions[deployment.function_id("app.handler", "AutomationRun")]
    worker = functions[deployment.function_id("worker.handler", "AutomationWorker")]
    account = run.invoke({"account": email})
    [invoice] = [i for i in account["invoices"] if i["number"] == number]
    client, period = account["client"], invoice["period"]
    assert invoice["status"] == "unpaid" and account["terms"], account
    listed = run.invoke({"listInvoices": {"client": client, "status": "unpaid"}})
    assert [i["number"] for i in listed["invoices"]] == [number] and listed["after"] is None
    # the export: an object in the template's bucket, encrypted, read through its presigned link
    export = run.invoke({"exportInvoices": period})
    assert export["key"].startswith("exports/") and "csv" not in export, export
    head = deployment.client("s3").head_object(Bucket=deployment.bucket(), Key=export["key"])
    assert head["ServerSideEncryption"] == "AES256"
    csv_text = requests.get(export["url"], timeout=10)
    assert csv_text.status_code == 200 and f"invoice,{number}," in csv_text.text
    # void: a credit note, emailed; then the month billed again, once, with a new number
    voided = run.invoke({"voidInvoice": number, "reason": "rehearsal: wrong plan"})
    note = voided["creditNote"]["number"]
    assert voided["status"] == "void" and re.fullmatch(r"CN-\d{6}", note), voided
    assert any(note in subject or note in html for subject, html in sent_mails(email))
    with pytest.raises(FunctionError, match=note):
        run.invoke({"voidInvoice": number, "reason": "twice"})  # refused, naming its credit note
    rebill = run.invoke({"rebill": voided["rebill"]})
    status = finish(deployment, run, worker, rebill["runId"])
    assert status["invoiced"] == 1 and status["failed"] == 0, status
    with pytest.raises(FunctionError, match="already has invoice"):
        run.invoke({"rebill": voided["rebill"]})  # exactly once
    numbers = {i["number"]: i["status"] for i in run.invoke({"account": client})["invoices"]}
    [new] = [n for n, state in numbers.items() if state == "unpaid"]
    assert numbers[number] == "void" and new != number, numbers
    return new
