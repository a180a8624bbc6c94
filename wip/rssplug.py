"""A per-test RSS log, as a pytest plugin, for finding what grows the integration suite's memory.

    PYTHONPATH=wip:layers/common/python:. RSS_LOG=/tmp/rss.log .venv/bin/python -m pytest -q -p rssplug

(run pytest directly: the Makefile sets PYTHONPATH). Each line: the process's RSS in MB and the test just
finished.
"""

from __future__ import annotations

import os


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    return 0


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    with open(os.environ.get("RSS_LOG", "rss.log"), "a") as log:
        log.write(f"{_rss_mb()} {nodeid}\n")
