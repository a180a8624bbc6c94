"""One logger, tracer and metrics object for the whole product (Powertools).

The tracer is built on the first invocation, not at import: building it imports the X-Ray SDK and patches
boto3 and requests, the costliest import of a cold start, and only a traced invocation needs it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing import Tracer

SERVICE = "postpay"
NAMESPACE = "PostPay"


class LazyTracer:
    """Powertools' Tracer, built on first use; its decorators can be applied at import time."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def tracer(self) -> Tracer:
        with self._lock:
            if self._tracer is None:
                from aws_lambda_powertools.tracing import Tracer

                self._tracer = Tracer(service=self._service)
            return self._tracer

    def capture_lambda_handler(self, handler: Callable | None = None, **options: Any) -> Any:
        if handler is None:
            return functools.partial(self.capture_lambda_handler, **options)
        return self._deferred("capture_lambda_handler", handler, options)

    def capture_method(self, method: Callable | None = None, **options: Any) -> Any:
        if method is None:
            return functools.partial(self.capture_method, **options)
        return self._deferred("capture_method", method, options)

    def _deferred(self, decorator: str, function: Callable, options: dict[str, Any]) -> Callable:
        traced: list[Callable] = []

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not traced:
                traced.append(getattr(self.tracer, decorator)(function, **options))
            return traced[0](*args, **kwargs)

        return call

    def __getattr__(self, name: str) -> Any:  # put_annotation, put_metadata, provider...
        return getattr(self.tracer, name)


logger = Logger(service=SERVICE)
tracer = LazyTracer(SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
