"""Where ``make run`` listens, written while it runs: ``make invoice`` and ``make op`` find it on any port."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def state_path() -> Path:
    """``.run-state.json`` in the checkout; POSTPAY_RUN_STATE points elsewhere (tests use their own)."""
    return Path(os.environ.get("POSTPAY_RUN_STATE") or ROOT / ".run-state.json")


def write(state: dict[str, Any]) -> Path:
    path = state_path()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**state, "pid": os.getpid()}, indent=2) + "\n")
    temporary.replace(path)  # readers never see half a file
    return path


def remove() -> None:
    path = state_path()
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read() -> dict[str, Any] | None:
    """The running ``make run``'s state, or None when there is none (or its process is gone)."""
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return state if isinstance(state, dict) else None
