"""The local gateway answers a large POST it will not read and closes the connection (issue #8)."""

from __future__ import annotations

import socket
import time

import pytest

from local.gateway import serve


class NoMail:
    def mails(self) -> list:
        return []


@pytest.fixture
def gateway():
    server = serve(NoMail(), 0)  # type: ignore[arg-type]
    yield server.server_port
    server.shutdown()


@pytest.mark.parametrize(("path", "status"), [("/_local/mail", b"405"), ("/signup", b"413")])
def test_a_large_post_it_will_not_read_gets_an_answer_and_a_closed_connection(gateway, path, status):
    # Given a client that announces 50 MB, sends 1 MB and waits for the answer
    client = socket.create_connection(("127.0.0.1", gateway), timeout=5)
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50000000\r\n\r\n"
    client.sendall(head.encode() + b"x" * 1_000_000)
    started = time.monotonic()
    # When it reads until the server closes
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the connection was left hanging after {received[:30]!r}")
    except ConnectionResetError:
        pass
    finally:
        client.close()
    # Then it got the refusal at once
    assert received.split(b" ")[1] == status
    assert time.monotonic() - started < 2


def test_the_mailbox_page_still_opens(gateway):
    client = socket.create_connection(("127.0.0.1", gateway), timeout=5)
    client.sendall(b"GET /_local/mail HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    client.close()
    assert received.startswith(b"HTTP/1.1 200") and b"Local mailbox" in received


def test_the_mailbox_is_one_document_with_a_main_landmark_that_fits_a_phone():
    # Given an email as SES holds it: a whole HTML document, with a long link
    from types import SimpleNamespace

    from local.gateway import mailbox_page

    mail = SimpleNamespace(
        subject="Confirm <you>",
        to=["ada@example.com"],
        source="billing@postpay.local",
        html="<!doctype html><html lang='en'><head><title>Confirm</title></head>"
        "<body style='max-width:36rem;padding:1rem'><p>Open http://localhost:8080/verify?token="
        + "x"
        * 43
        + "</p>"
        "</body></html>",
        attachments={},
    )
    # When the mailbox shows it
    page = mailbox_page([mail])
    # Then the page is one document in a <main>, sized for a phone, holding only the email's body
    assert page.count("<html") == page.count("<body") == page.count("<head") == 1
    assert "<html lang='en'>" in page and "width=device-width" in page
    assert page.index("<main>") < page.index("<h1>Local mailbox</h1>") < page.index("</main>")
    assert "max-width:36rem" not in page and "token=" + "x" * 43 in page
    # and an email wider than the screen wraps or scrolls in its own focusable box, never the page
    assert "overflow-wrap:break-word;overflow-x:auto" in page and "tabindex='0'" in page
    assert "Confirm &lt;you&gt;" in page
    # each email's box has a name of its own (two emails may share a subject)
    two = mailbox_page([mail, mail])
    assert "'Email 1 of 2: Confirm &lt;you&gt;'" in two and "'Email 2 of 2: Confirm &lt;you&gt;'" in two
