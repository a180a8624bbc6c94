"""Every page a customer can reach, in every state, at 1280 and 390 px: axe-core finds no violation,
nothing is wider than a phone's screen, and a screenshot of each is kept (tests/e2e/screenshots/,
not committed). On the way: an invoice issued with `make invoice … NOW=…` shows seller, buyer, tax,
due date and status on the page, in the PDF and in the email."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VNU = ROOT / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
SHOTS = Path(__file__).resolve().parent / "screenshots"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
PASSWORD = "a very long passphrase"


@pytest.fixture
def tab(chromium):
    if not AXE.exists() or not VNU.exists():
        pytest.fail("axe-core or vnu-jar is missing: run `make browser-tools` (make test and make e2e do it)")
    shutil.rmtree(SHOTS / "html", ignore_errors=True)
    # The pages forbid inline scripts (CSP); the test's own axe-core script is let in by bypassing CSP.
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def check(page: Page, name: str) -> None:
    """axe-core at both widths, no horizontal overflow on a phone, and a screenshot of each."""
    (SHOTS / "html").mkdir(parents=True, exist_ok=True)
    (SHOTS / "html" / f"{name}.html").write_text(page.content(), "utf-8")  # validated at the end (vnu)
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            """async () => (await axe.run(document)).violations.map(v =>
                 `${v.id} (${v.impact}): ${v.help} -> ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)"""
        )
        assert violations == [], f"{name} at {width} px: {violations}"
        if width <= 390:
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{name} is {scroll} px wide on a {width} px screen"
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def latest_mail_link(page: Page, site, email: str, subject: str, link: str) -> str:
    page.goto(site.base + "/_local/mail")
    href = (
        page.locator("article", has_text=subject)
        .filter(has_text=email)
        .first.get_by_role("link", name=link)
        .get_attribute("href")
    )
    assert href
    return href


def issue_invoices(site) -> None:
    """`make invoice DATE=<next month's 1st> NOW=<then>`: this month invoiced, as an operator would."""
    now = datetime.now(UTC)
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    env = {**os.environ, **site.ports, "PYTHONPATH": f"{ROOT / 'layers/common/python'}:{ROOT}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.invoice",
            "--date",
            f"{first:%Y-%m-%d}",
            "--now",
            f"{first:%Y-%m-%d}T00:05:00Z",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pdf_text(data: bytes) -> str:
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (Debian's poppler-utils) is needed: `make browser` installs it"
    return subprocess.run(
        [pdftotext, "-layout", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode()


def test_every_page_is_accessible_fits_a_phone_and_the_invoice_is_complete(site, tab):
    page = tab
    email = f"pages-{uuid.uuid4().hex[:10]}@example.com"

    # Signed out
    for name, path in (("landing", "/"), ("signup", "/signup"), ("login", "/login"), ("forgot", "/forgot")):
        page.goto(site.base + path)
        check(page, name)
    page.goto(site.base + "/no/such/page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    check(page, "not-found")
    page.goto(site.base + "/verify?token=not-a-real-token")
    check(page, "link-problem")
    page.goto(site.base + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill("wrong password here")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    check(page, "login-failed")

    # Signing up
    page.goto(site.base + "/signup")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct")
    check(page, "signup-errors")
    page.get_by_label("Your name").fill("Grace Hopper")
    page.get_by_label("Company (optional)").fill("Compilers Inc.")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    # post-redirect-get: "Check your inbox" is a GET page; a reload never sends the form (or email) again
    expect(page).to_have_url(site.base + "/signup/sent")
    page.reload()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    check(page, "check-inbox")
    page.goto(latest_mail_link(page, site, email, "Confirm your email", "Confirm my email address"))
    expect(page.get_by_role("heading", name="One last step")).to_be_visible()
    check(page, "terms")
    page.get_by_label("The password you chose when you signed up").fill(PASSWORD)
    page.get_by_label("Terms of Service").check()
    page.get_by_label("Post-Pay Terms").check()
    page.get_by_role("button", name="Accept and create my account").click()
    # post-redirect-get: the dashboard says the outcome, and Back does not resubmit the terms
    expect(page).to_have_url(re.compile(r"/dashboard\?notice="))
    expect(page.get_by_role("status")).to_contain_text("Your account is ready")
    check(page, "dashboard")
    # Back to the used link, signed in: the dashboard, not "link already used"
    page.go_back()
    expect(page).to_have_url(site.base + "/dashboard")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello Grace Hopper")
    page.goto(site.base + "/_local/mail")
    expect(page.locator("article", has_text="Confirm your email").filter(has_text=email)).to_have_count(1)

    # Billing details, with a mistake first
    page.goto(site.base + "/account")
    check(page, "account")
    page.get_by_label("Tax or VAT id (optional)").fill("not valid!")
    page.get_by_role("button", name="Save billing details").click()
    expect(page.locator("#tax_id-error")).to_be_visible()
    check(page, "account-billing-errors")
    page.get_by_label("Billing address (optional)").fill("7 Harbour Road\nArlington VA 22201\nUnited States")
    page.get_by_label("Tax or VAT id (optional)").fill("GB 987 6543 21")
    page.get_by_role("button", name="Save billing details").click()
    expect(page.get_by_role("status")).to_contain_text("billing details are saved")

    # A signed-in client on a missing page keeps their own navigation
    page.goto(site.base + "/no/such/page")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    check(page, "not-found-signed-in")

    # The invoice: page, list, PDF and email
    issue_invoices(site)
    page.goto(site.base + "/invoices")
    check(page, "invoices")
    page.locator("table a").first.click()
    main = page.locator("main")
    for text in (
        "Example Hosting Ltd",
        "GB123456789",
        "Grace Hopper",
        "Compilers Inc.",
        "7 Harbour Road",
        "GB987654321",
        "Subtotal",
        "VAT 20 %",
        "Total",
        "Due",
        "How to pay",
    ):
        expect(main).to_contain_text(text)
    expect(page.locator("#invoice-status")).to_have_text("Unpaid")
    check(page, "invoice")
    number = page.get_by_role("heading", level=1).inner_text().removeprefix("Invoice ").strip()
    total = page.locator("#total").inner_text()
    pdf = page.request.get(site.base + f"/invoices/{number}.pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.body())
    for expected in (number, "Example Hosting Ltd", "Grace Hopper", "VAT 20 %", total, "How to pay"):
        assert expected in text, expected
    page.goto(site.base + "/_local/mail")
    mail = page.locator("article", has_text=f"Invoice {number}").first
    expect(mail).to_contain_text("Hello Grace Hopper")
    expect(mail).to_contain_text(total)
    expect(mail.locator(".attachments")).to_contain_text(f"{number}.pdf")
    check(page, "mailbox")  # the local mailbox too: one <main>, and the invoice's table never widens the page

    # Password reset pages
    page.goto(site.base + "/forgot")
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Send me a reset link").click()
    check(page, "forgot-sent")
    page.goto(latest_mail_link(page, site, email, "Reset your password", "Reset my password"))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    check(page, "reset")

    # And every page above is valid HTML (the Nu validator, on each page as the browser holds it)
    java = shutil.which("java")
    assert java, "a Java runtime is needed for vnu-jar: `make browser` installs default-jre-headless"
    checked = subprocess.run(
        [java, "-jar", str(VNU), "--errors-only", "--format", "text", str(SHOTS / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
