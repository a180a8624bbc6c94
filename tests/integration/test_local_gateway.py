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
