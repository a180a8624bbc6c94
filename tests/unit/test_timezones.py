"""Time zones come from the tzdata package shipped with the code, not from the OS's files."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import zoneinfo, datetime\n"
    "assert zoneinfo.TZPATH == (), zoneinfo.TZPATH\n"
    "zone = zoneinfo.ZoneInfo('Pacific/Auckland')\n"
    "print(datetime.datetime(2026, 1, 1, tzinfo=zone).utcoffset())\n"
)


def test_zones_resolve_with_no_system_time_zone_files():
    # Given a Python that may not read any OS time zone directory (as on a minimal Lambda runtime)
    env = {**os.environ, "PYTHONTZPATH": ""}
    # When a billing time zone is loaded
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False
    )
    # Then it resolves from the tzdata package
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "13:00:00"
