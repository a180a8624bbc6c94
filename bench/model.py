"""The AWS model of the benches: every HTTP request a process makes is counted by kind and delayed by the
round trip that kind takes in an AWS region, on the client side, before it goes to moto or the emulator.

Client-side, because moto server answers one request at a time: a delay inside it would serialize every
worker behind it, which DynamoDB never does. The servers' own processing time comes on top of the model, so
benches are sized to keep it small (see README, Speed and scale).
"""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
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
        try:
            latency[kind] = float(value)
        except ValueError:
            raise ValueError(f"{kind}={value!r}: a round trip in milliseconds, such as {kind}=8") from None
        if latency[kind] < 0:
            raise ValueError(f"{kind}={value}: a round trip cannot be negative")
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
    clock: VirtualClock | None = None  # the model's time (VirtualClock), when the bench keeps it
    # How much slower than the model the requests really wait here (time dilation): with every round trip
    # DILATION times longer in real time, moto's one-at-a-time answers and the processes' shared cores take
    # a small part of each wait, so requests meet in real time in about the order they would in the model
    # (what decides which transaction finds the counter moved). The clock counts the undilated round trip.
    dilation: float = 1.0
    sends: list[tuple[float, float]] = field(
        default_factory=list
    )  # each SendMessageBatch's end, on the clock
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
        seconds = self.latency_ms.get(kind, 0.0) / 1000 * self.dilation
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
                if model.clock is not None:
                    model.clock.wait(model.latency_ms.get(kind, 0.0) / 1000)
            response = original(pool, method, url, *args, **kwargs)
            if model.counting:
                operation = model.operation(kind, url, headers)
                if model.clock is not None and operation == "sqs SendMessageBatch":
                    model.sends.append(model.clock.now())
                with model._lock:
                    model.counts[kind] += 1
                    model.operations[operation] += 1
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


# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB (AWS Lambda docs). The
# model counts a core of the machine the bench runs on as one vCPU (CPU_FACTOR scales that).
FULL_VCPU_MB = 1769


def cpu_scale(memory_mb: int, cpu_factor: float = 1.0) -> float:
    """How much longer CPU work takes in a function of ``memory_mb`` than on one core here. Python runs one
    thread at a time, so memory above one vCPU does not make it faster."""
    return cpu_factor * FULL_VCPU_MB / min(memory_mb, FULL_VCPU_MB)


class VirtualClock:
    """The time of the AWS model, per thread: a thread's clock advances by the CPU the thread spends
    (``time.thread_time``, times ``scale``: the function's share of a vCPU) and by the modelled round trip of
    each request it makes, never by the time a server here took to answer. moto server answers one request
    at a time and its CPU per request grows with its tables; DynamoDB answers concurrently in about the same
    round trip whatever the load, so in the model a request costs its round trip and nothing else.

    Two clocks run side by side: ``model`` (CPU and round trips: the product) and ``floor`` (round trips
    only: the same requests with no product logic, the I/O floor). A task submitted to a thread pool starts at
    its submitter's time (or later, when every thread of the pool is busy with earlier tasks: a bounded pool
    queues), and whoever waits for its result continues at no earlier than its end (``install_threads``)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._local = threading.local()

    def _state(self) -> list[float]:
        state: list[float] | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = [0.0, 0.0, time.thread_time()]  # model, floor, CPU mark
        return state

    def tick(self) -> list[float]:
        """Charges the CPU this thread spent since its last tick to its model clock (unless it is not the
        function's: ``charging(False)``)."""
        state = self._state()
        now = time.thread_time()
        if getattr(self._local, "charged", True):
            state[0] += (now - state[2]) * self.scale
        state[2] = now
        return state

    @contextlib.contextmanager
    def charging(self, charged: bool) -> Iterator[None]:
        """Within it, this thread's CPU is the function's (``True``) or not (``False``: the work the Lambda
        service does on AWS, such as the event source mapping's receiving and deleting of the messages,
        whose round trips still count)."""
        self.tick()
        before = getattr(self._local, "charged", True)
        self._local.charged = charged
        try:
            yield
        finally:
            self.tick()
            self._local.charged = before

    def now(self) -> tuple[float, float]:
        state = self.tick()
        return state[0], state[1]

    def wait(self, seconds: float, *, io: bool = True) -> None:
        """A round trip (both clocks) or a pause of the product's own (``io=False``: the model's only)."""
        state = self.tick()
        state[0] += seconds
        if io:
            state[1] += seconds

    def at_least(self, model: float, floor: float) -> None:
        state = self.tick()
        state[0], state[1] = max(state[0], model), max(state[1], floor)

    def set(self, model: float, floor: float) -> None:
        state = self.tick()
        state[0], state[1] = model, floor

    def idle(self) -> None:
        """Forgets the CPU since the last tick (a pool thread waiting for work, the bench's own loop)."""
        self._state()[2] = time.thread_time()


def install_threads(clock: VirtualClock) -> Callable[[], None]:
    """Fork and join in the model: ``ThreadPoolExecutor.submit`` starts the task's clock at the submitter's,
    ``Future.result`` moves the waiter's clock to the task's end. Returns what undoes it."""
    from concurrent.futures import Future, ThreadPoolExecutor

    submit, result = ThreadPoolExecutor.submit, Future.result

    def slots(pool: Any) -> tuple[threading.Lock, list[float], list[float]]:
        """The pool's threads as slots in the model: when each is next free, on either clock."""
        found = getattr(pool, "_bench_slots", None)
        if found is None:
            found = pool._bench_slots = (
                threading.Lock(),
                [0.0] * pool._max_workers,
                [0.0] * pool._max_workers,
            )
        return found

    def timed_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        submitted = clock.now()
        lock, model_free, floor_free = slots(self)
        end: list[tuple[float, float]] = []

        def timed(*a: Any, **k: Any) -> Any:
            # the task takes the slot free first (a bounded pool queues the rest), whichever thread runs it
            with lock:
                start = (
                    max(submitted[0], heapq.heappop(model_free)),
                    max(submitted[1], heapq.heappop(floor_free)),
                )
            clock.idle()
            clock.set(*start)
            try:
                return fn(*a, **k)
            finally:
                finished = clock.now()
                with lock:
                    heapq.heappush(model_free, finished[0])
                    heapq.heappush(floor_free, finished[1])
                end.append(finished)

        future = submit(self, timed, *args, **kwargs)
        future._bench_end = end  # type: ignore[attr-defined]
        return future

    def timed_result(self: Any, timeout: float | None = None) -> Any:
        try:
            return result(self, timeout)
        finally:
            end = getattr(self, "_bench_end", None)
            if end:
                clock.at_least(*end[0])

    ThreadPoolExecutor.submit = timed_submit  # type: ignore[method-assign]
    Future.result = timed_result  # type: ignore[method-assign]

    def undo() -> None:
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
        Future.result = result  # type: ignore[method-assign]

    return undo


def schedule(
    durations: list[float], available: list[float], workers: int, *, not_before: float = 0.0
) -> float:
    """When the last batch ends if ``workers`` environments take the batches in order from one queue, each
    batch when a worker is free and its messages have been queued (``available``): the time of a run in
    the model, from the batches' own durations in the model."""
    free = [0.0] * max(1, workers)
    end = not_before
    for duration, ready in zip(durations, available, strict=True):
        start = max(heapq.heappop(free), ready)
        heapq.heappush(free, start + duration)
        end = max(end, start + duration)
    return end
