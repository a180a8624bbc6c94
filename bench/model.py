"""The AWS model of the benches: every HTTP request a process makes is counted by kind and delayed by the
round trip that kind takes in an AWS region, on the client side, before it goes to moto or the emulator.

Client-side, because moto server answers one request at a time: a delay inside it would serialize every
worker behind it, which DynamoDB never does. The servers' own processing time comes on top of the model, so
benches are sized to keep it small (see README, Speed and scale).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import urllib3.connectionpool

# Round trips in milliseconds, close to AWS in one region (the model): DynamoDB GetItem/PutItem/
# UpdateItem/Query, TransactWriteItems, SES v2 SendEmail, SQS, the SolusVM usage call.
DEFAULT_LATENCY_MS: dict[str, float] = {
    "dynamodb": 8.0,
    "transaction": 15.0,
    "ses": 40.0,
    "sqs": 10.0,
    "solusvm": 80.0,
    "parameters": 10.0,
}


def parse_latency(spec: str) -> dict[str, float]:
    """``"dynamodb=8,ses=40"`` over the defaults; ``"0"`` turns every delay off."""
    latency = dict(DEFAULT_LATENCY_MS)
    spec = spec.strip()
    if spec == "0":
        return dict.fromkeys(latency, 0.0)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, value = part.partition("=")
        if kind not in latency:
            raise ValueError(f"unknown call kind {kind!r}: one of {', '.join(latency)}")
        latency[kind] = float(value)
    return latency


@dataclass
class Recorded:
    """One request as it went out, for the I/O floor to replay."""

    started: float
    ended: float
    kind: str
    port: int
    method: str
    url: str
    body: Any
    headers: dict


@dataclass
class RequestModel:
    solus_port: int
    latency_ms: dict[str, float]
    counts: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)  # "dynamodb GetItem", "sqs ReceiveMessage"...
    recording: list[Recorded] | None = None
    counting: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def kind(self, port: int, url: str, headers: Any) -> str:
        if port == self.solus_port:
            return "solusvm"
        target = headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        if target.endswith(".TransactWriteItems"):
            return "transaction"
        if target.startswith("DynamoDB"):
            return "dynamodb"
        if target.startswith("AmazonSQS"):
            return "sqs"
        if target.startswith(("AmazonSSM", "secretsmanager")):
            return "parameters"
        if "/v2/email" in url:
            return "ses"
        return f"other:{target or url[:40]}"

    @staticmethod
    def operation(kind: str, url: str, headers: Any) -> str:
        target = headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        if target:
            return f"{kind} {target.rsplit('.', 1)[-1]}"
        if kind == "solusvm":
            return "solusvm usage" if "/usage" in url else f"solusvm {url.split('?', 1)[0]}"
        return f"{kind} {url.split('?', 1)[0].rstrip('/').rsplit('/', 1)[-1]}"  # SES v2: outbound-emails

    def delay(self, kind: str) -> None:
        seconds = self.latency_ms.get(kind, 0.0) / 1000
        if seconds:
            time.sleep(seconds)

    def install(self) -> None:
        model, original = self, urllib3.connectionpool.HTTPConnectionPool.urlopen

        def urlopen(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            headers = kwargs.get("headers") or {}
            kind = model.kind(pool.port, url, headers)
            started = time.perf_counter()
            if model.counting:
                model.delay(kind)
            response = original(pool, method, url, *args, **kwargs)
            if model.counting:
                with model._lock:
                    model.counts[kind] += 1
                    model.operations[model.operation(kind, url, headers)] += 1
                    if kind == "transaction" and response.status == 400:
                        model.counts["transaction_cancelled"] += 1
                    if model.recording is not None:
                        model.recording.append(
                            Recorded(
                                started,
                                time.perf_counter(),
                                kind,
                                pool.port,
                                method,
                                url,
                                kwargs.get("body"),
                                dict(headers),
                            )
                        )
            return response

        urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign,assignment]

    def forget_last(self, kind: str) -> None:
        """Un-counts the last request of a kind (an empty poll of the queue: the event source's, not ours)."""
        with self._lock:
            self.counts[kind] -= 1
            self.operations[f"{kind} ReceiveMessage"] -= 1
            if self.recording:
                for index in range(len(self.recording) - 1, -1, -1):
                    if self.recording[index].kind == kind:
                        del self.recording[index]
                        break


def parallel_groups(recording: list[Recorded]) -> list[list[Recorded]]:
    """The requests of one process in the order they went out, grouped where they overlapped in time (the
    product's thread pool): the floor replays each group at once and the groups one after another."""
    groups: list[list[Recorded]] = []
    group_end = float("-inf")
    for request in sorted(recording, key=lambda r: r.started):
        if groups and request.started < group_end:
            groups[-1].append(request)
            group_end = max(group_end, request.ended)
        else:
            groups.append([request])
            group_end = request.ended
    return groups
