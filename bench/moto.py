"""moto server for the benches, in its own process: the local stack's, one request at a time (see
local.stack.MotoServer), so a transaction stays atomic as in DynamoDB.

    python -m bench.moto PORT
"""

from __future__ import annotations

import logging
import sys
import time

from local.stack import MotoServer


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    MotoServer(int(sys.argv[1])).start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
