"""API Gateway REST API proxy events, built exactly as API Gateway builds them, and a Lambda context."""

from __future__ import annotations

import base64
import importlib.util
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parent.parent


def rest_event(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    body: bytes | None = None,
    source_ip: str = "127.0.0.1",
    resource: str = "/{proxy+}",
    stage: str = "prod",
    request_path: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``path`` is the resource path API Gateway hands the function (never the stage); ``request_path`` is
    the path the browser asked for: ``/<stage><path>`` at the API's own URL, ``path`` on a custom domain
    mapped at its root."""
    headers = dict(headers or {})
    multi_query: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        multi_query.setdefault(key, []).append(value)
    text_body: str | None = None
    is_b64 = False
    if body:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:  # API Gateway passes bytes it cannot read as text base64-encoded
            text_body, is_b64 = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": request_path if request_path is not None else f"/{stage}{path}",
            "stage": stage,
            "domainName": headers.get("Host", ""),
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "local",
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
        },
        "body": text_body,
        "isBase64Encoded": is_b64,
    }


@dataclass
class LambdaContext:
    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_ms: int = 30_000  # the function's timeout: the time left counts down from it, as in Lambda
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


def load_function(name: str, module: str = "app") -> ModuleType:
    """Imports ``functions/<name>/<module>.py`` under a unique module name (every function has an app.py)."""
    unique = f"postpay_function_{name}_{module}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, ROOT / "functions" / name / f"{module}.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[unique] = loaded
    spec.loader.exec_module(loaded)
    return loaded
