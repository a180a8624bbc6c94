"""A batch renders its invoices' PDFs ahead, in one thread, while its emails go out one after another: each
email carries the same PDF it would have rendered itself, a rendering that fails fails only its own job
(retried by the queue, which then sends the email once), and a PDF rendered for another day is not sent."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

import postpay.billing.invoicing as invoicing_module
from postpay.billing.invoicing import EMAIL_LEASE
from postpay.billing.pdf import invoice_pdf
from postpay.models import Invoice
from postpay.payments import pay_online_url
from postpay.periods import local_date
from tests.unit.test_batch_cards import ADA, BOB, World
from tests.unit.test_invoicing_jobs import OCTOBER


class Renderings:
    """invoice_pdf as the worker calls it, recording on which thread and for whom; ``fail_for`` raises."""

    def __init__(self) -> None:
        self.threads: dict[int, list[str]] = {}
        self.fail_for: int | None = None
        self.hold = threading.Event()  # cleared: a rendering waits until it is set
        self.hold.set()
        self.entered = threading.Event()  # a rendering has begun

    def __call__(self, invoice: Invoice, **kwargs: Any) -> bytes:
        self.threads.setdefault(invoice.client_id, []).append(threading.current_thread().name)
        self.entered.set()
        self.hold.wait(timeout=10)
        if invoice.client_id == self.fail_for:
            raise RuntimeError("the PDF could not be rendered")
        return invoice_pdf(invoice, **kwargs)


@pytest.fixture
def renderings(monkeypatch: pytest.MonkeyPatch) -> Renderings:
    spy = Renderings()
    monkeypatch.setattr(invoicing_module, "invoice_pdf", spy)
    return spy


def attachment(world: World, client_id: int) -> bytes:
    [pdf] = [
        m.attachments[0][2]
        for m in world.mailer.sent
        if m.template == "invoice" and m.context["invoice"].client_id == client_id
    ]
    return pdf


def test_a_batch_renders_its_pdfs_in_one_thread_and_each_email_carries_its_own(renderings):
    world = World()
    assert world.batch() == ["invoiced", "invoiced"]
    assert {c: [name.split("_")[0] for name in names] for c, names in renderings.threads.items()} == {
        ADA: ["compose"],
        BOB: ["compose"],
    }
    settings, today = world.invoicing.settings, local_date(world.invoicing.clock.now(), "UTC")
    for client_id in (ADA, BOB):
        billed = world.billing.billed(client_id, OCTOBER.key)
        assert billed is not None and billed[1] is not None
        invoice = world.email_of(client_id)["invoice"]
        expected = invoice_pdf(invoice, today=today, pay_url=pay_online_url(settings, invoice))
        assert attachment(world, client_id) == expected


def test_a_rendering_that_fails_fails_its_job_alone_and_the_retry_sends_the_email_once(renderings):
    world = World()
    renderings.fail_for = ADA
    jobs = world.jobs()
    prepared = world.invoicing.prepare(jobs)
    with pytest.raises(RuntimeError, match="could not be rendered"):
        world.invoicing.finish(prepared[0], final_attempt=False)
    assert world.invoicing.finish(prepared[1], final_attempt=False) == "invoiced"
    assert [m.context["invoice"].client_id for m in world.mailer.sent if m.template == "invoice"] == [BOB]
    renderings.fail_for = None
    # past the lease the failed attempt held on Ada's email
    world.invoicing.clock.advance(seconds=EMAIL_LEASE.total_seconds() + 60)
    assert world.invoicing.attempt(jobs[0], delivery=2, remaining_ms=900_000) == "invoiced"
    assert world.invoicing.attempt(jobs[0], delivery=3, remaining_ms=900_000) == "invoiced"
    assert sorted(m.context["invoice"].client_id for m in world.mailer.sent if m.template == "invoice") == [
        ADA,
        BOB,
    ]


def test_a_pdf_rendered_before_midnight_is_not_sent_after_it(renderings):
    world = World()
    world.invoicing.clock.moment = world.invoicing.clock.moment.replace(hour=23, minute=59, second=59)
    prepared = world.invoicing.prepare(world.jobs())
    world.invoicing.clock.advance(seconds=2)
    assert [world.invoicing.finish(item, final_attempt=False) for item in prepared] == [
        "invoiced",
        "invoiced",
    ]
    today = local_date(world.invoicing.clock.now(), "UTC")
    invoice = world.email_of(BOB)["invoice"]
    assert attachment(world, BOB) == invoice_pdf(
        invoice, today=today, pay_url=pay_online_url(world.invoicing.settings, invoice)
    )
    assert threading.main_thread().name in renderings.threads[BOB], renderings.threads
    assert invoice.issued_on == today - timedelta(days=1)


def test_pdfs_of_different_shapes_rendered_in_two_threads_at_once_are_the_pdfs_rendered_alone():
    # fpdf2 numbers a document's objects as it outputs it and keeps the font descriptor's number on the
    # descriptor itself: a descriptor shared between documents took another document's number
    from concurrent.futures import ThreadPoolExecutor
    from datetime import date

    from bench.pdf import LATIN, invoice
    from postpay.billing import pdf

    short, long = invoice(LATIN, servers=1), invoice(LATIN, servers=40)  # one page, two pages
    day = date(2026, 11, 2)
    alone = {
        id(doc): pdf.invoice_pdf(doc, today=day, pay_url="https://pay.example/x") for doc in (short, long)
    }
    documents = [short, long] * 15
    with ThreadPoolExecutor(2) as threads:
        rendered = list(
            threads.map(lambda d: pdf.invoice_pdf(d, today=day, pay_url="https://pay.example/x"), documents)
        )
    assert all(out == alone[id(doc)] for doc, out in zip(documents, rendered, strict=True))


def test_jobs_left_unfinished_have_their_emails_no_longer_composed(renderings):
    world = World()
    renderings.hold.clear()  # the first email is being composed, the second waits its turn
    prepared = world.invoicing.prepare(world.jobs())
    first, second = (item.email for item in prepared)
    assert first is not None and second is not None
    assert renderings.entered.wait(timeout=10)
    world.invoicing.discard(prepared)
    renderings.hold.set()
    assert second.message.cancelled() and first.message.result(timeout=10)
    assert list(renderings.threads) == [ADA]
