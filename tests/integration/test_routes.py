"""The routes table (postpay.routes) is what each page function actually serves: every path and method
in the table has a handler in its function, and no function serves a route the table does not list
(the stack and the local gateway would never send it there)."""

from __future__ import annotations

import re

import pytest

from postpay.routes import ROUTES, function_for, methods_of


@pytest.mark.parametrize("name", sorted({route.function for route in ROUTES.values()}))
def test_each_function_serves_exactly_its_routes_in_the_table(functions, name):
    app = functions[name].app
    served: dict[str, set[str]] = {}
    for route in [*app._static_routes, *app._dynamic_routes]:
        for method in route.method if isinstance(route.method, (list, tuple, set)) else [route.method]:
            served.setdefault(route.path, set()).add(method.upper())
    table = {re.sub(r"\{(\w+)\}", r"<\1>", path): methods for path, methods in methods_of(name).items()}
    assert served == table


def test_every_listed_path_reaches_its_function():
    for path, route in ROUTES.items():
        assert function_for(path.replace("{number}", "INV-1")) == route.function
