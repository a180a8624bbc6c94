"""One Jinja2 environment for pages and emails: autoescape for .html, plain for .txt."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape


def _money(amount: Decimal | str, currency: str = "") -> str:
    value = Decimal(amount)
    text = f"{value:,.2f}" if value == value.quantize(Decimal("0.01")) else f"{value:,f}"
    return f"{text} {currency}".strip()


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
    return env


def render(template: str, /, **context: object) -> str:
    return environment().get_template(template).render(**context)
