"""One Jinja2 environment for pages and emails: autoescape for .html, plain for .txt."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from postpay.money import format_amount, format_count


def _money(amount: Decimal | str, currency: str) -> str:
    return format_amount(Decimal(amount), currency)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("postpay", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["count"] = format_count
    env.filters["percent"] = lambda rate: format(Decimal(rate).normalize(), "f")
    return env


def render(template: str, /, **context: object) -> str:
    return environment().get_template(template).render(**context)
