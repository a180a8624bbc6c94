"""One Lambda execution environment of the invoicing bench, in its own process.

    python -m bench.worker product <out.pickle>   # the real worker fed from the queue, until told to stop
    python -m bench.worker floor <in.pickle> <out.pickle>  # replays one product worker's requests, no logic

Both read the model (solus port, latencies) from the environment the bench sets, print "ready" once warm,
wait for a line on stdin to start, and write their figures to the out file when done.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.model import RequestModel, VirtualClock, install_threads, parallel_groups

# An idle worker polls again after 20 ms, then less and less often (at most every 250 ms): moto answers one
# request at a time, and twenty idle workers polling every 20 ms kept it busy with empty ReceiveMessage
# calls (~5 ms of its CPU each) while the others waited behind them. Lambda's pollers long-poll instead.
IDLE_FIRST_SECONDS = 0.02
IDLE_MOST_SECONDS = 0.25


def _model() -> RequestModel:
    model = RequestModel(
        int(os.environ["BENCH_SOLUS_PORT"]),
        json.loads(os.environ["BENCH_LATENCY_MS"]),
        dilation=float(os.environ.get("BENCH_DILATION", "1")),
    )
    model.install()
    return model


def _wait_for_go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def product(out: Path) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from local.events import load_function
    from local.poller import QueuePoller
    from postpay.limits import QUEUE_VISIBILITY_TIMEOUT_SECONDS

    model = _model()
    model.counting = False
    clock = model.clock = VirtualClock(float(os.environ["BENCH_CPU_SCALE"]))
    install_threads(clock)
    worker = load_function("automation", "worker")
    # as the stack's queue hides a message: the local stack's 30 s made moto's slow answers redeliver jobs

    def function(event: dict, context: Any) -> Any:
        with clock.charging(True):
            return worker.handler(event, context)

    poller = QueuePoller(
        os.environ["INVOICE_QUEUE_URL"], function, visibility_timeout=QUEUE_VISIBILITY_TIMEOUT_SECONDS
    )
    stop = Path(os.environ["BENCH_STOP_FILE"])
    model.recording = []
    _wait_for_go()
    model.counting = True
    cpu = time.process_time()
    last_done = time.time()
    profiler = None
    if os.environ.get("BENCH_WORKER_PROFILE"):  # the main thread's CPU by function (cProfile): <value>.<pid>
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    idle = IDLE_FIRST_SECONDS
    # each batch: when it was taken (here), its messages, and its duration in the model: the product's
    # (CPU and round trips, and never less than all its threads' CPU: one vCPU runs one of them at a time)
    # and the floor's (round trips only)
    batches: list[tuple[float, int, float, float]] = []
    with contextlib.redirect_stdout(io.StringIO()):  # Powertools prints metrics (EMF) to stdout
        while not stop.exists():
            taken, before, cpu_before = time.time(), clock.now(), time.process_time()
            with clock.charging(False):  # the event source mapping's receive and delete: not the function's
                messages = poller.poll_once(wait_seconds=0)
            if messages == 0:
                model.forget_last("sqs")  # an empty poll: the event source mapping's, not a request of ours
                clock.set(*before)
                model.counting = False
                time.sleep(idle)
                idle = min(idle * 2, IDLE_MOST_SECONDS)
                model.counting = True
            else:
                after = clock.now()
                busy = (time.process_time() - cpu_before) * clock.scale
                batches.append((taken, messages, max(after[0] - before[0], busy), after[1] - before[1]))
                last_done = time.time()
                idle = IDLE_FIRST_SECONDS
    model.counting = False
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{os.environ['BENCH_WORKER_PROFILE']}.{os.getpid()}")
    out.write_bytes(
        pickle.dumps(
            {
                "counts": dict(model.counts),
                "operations": dict(model.operations),
                "recording": model.recording,
                "cpu": time.process_time() - cpu,
                "last_done": last_done,
                "batches": batches,
            }
        )
    )


def floor(source: Path, out: Path) -> None:
    import urllib3

    model = _model()
    model.counting = False
    recording = pickle.loads(source.read_bytes())["recording"]  # noqa: S301 - written by our own worker, in our temp dir
    port_map = json.loads(os.environ["BENCH_PORT_MAP"])
    pools: dict[int, urllib3.HTTPConnectionPool] = {}
    groups = parallel_groups(recording)

    def send(request: Any) -> None:
        target = int(port_map.get(str(request.port), request.port))
        pool = pools.get(target)
        if pool is None:
            pool = pools.setdefault(target, urllib3.HTTPConnectionPool("127.0.0.1", target, maxsize=32))
        model.delay(request.kind)
        pool.urlopen(
            request.method,
            request.url,
            body=request.body,
            headers=request.headers,
            retries=False,
            preload_content=True,
        )

    _wait_for_go()
    cpu = time.process_time()
    started = time.time()
    with ThreadPoolExecutor(max_workers=32) as threads:
        for group in groups:
            if len(group) == 1:
                send(group[0])
            else:
                list(threads.map(send, group))
    out.write_bytes(
        pickle.dumps({"cpu": time.process_time() - cpu, "started": started, "last_done": time.time()})
    )


def main() -> None:
    if sys.argv[1] == "product":
        product(Path(sys.argv[2]))
    else:
        floor(Path(sys.argv[2]), Path(sys.argv[3]))


if __name__ == "__main__":
    main()
