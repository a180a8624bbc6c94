from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.events import rest_event
from postpay.routes import function_for
from postpay.web.http import HttpError, Request

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def request(body: bytes, headers: dict[str, str] | None = None) -> Request:
    return Request.from_event(
        rest_event("POST", "/signup", headers=FORM if headers is None else headers, body=body)
    )


def test_form_fields_are_decoded():
    assert request(b"name=Ad%C3%A1&email=a%40b.co&company=").form() == {
        "name": "Adá",
        "email": "a@b.co",
        "company": "",
    }


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"a=1&a=2", FORM, 400),
        (b"a=%ff", FORM, 400),
        (b"a=\xff\xfe", FORM, 400),
        (b"a=" + b"x" * 16385, FORM, 413),
        (b"a=1", {"Content-Type": "text/plain"}, 415),
        (b"a=1", {}, 415),
        (b"a=%00", FORM, 400),
        (b"&".join(b"f%d=1" % i for i in range(50)), FORM, 400),
    ],
)
def test_bad_bodies_are_refused(body, headers, status):
    with pytest.raises(HttpError) as error:
        request(body, headers).form()
    assert error.value.status == status and error.value.message


@given(st.binary(max_size=2000))
def test_any_body_is_either_a_form_or_a_4xx(body):
    try:
        fields = request(body).form()
    except HttpError as error:
        assert 400 <= error.status < 500
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


def test_cookie_and_identity_are_read():
    event = rest_event(
        "GET", "/", headers={"Cookie": "__Host-csrf=abc; other=1", "User-Agent": "UA"}, source_ip="192.0.2.1"
    )
    parsed = Request.from_event(event)
    assert (
        parsed.cookies["__Host-csrf"] == "abc"
        and parsed.source_ip == "192.0.2.1"
        and parsed.user_agent == "UA"
    )


@pytest.mark.parametrize(
    ("path", "function"),
    [("/", "signup"), ("/signup", "signup"), ("/verify", "verify"), ("/sso", "sso"), ("/nowhere", "signup")],
)
def test_routes(path, function):
    assert function_for(path) == function
