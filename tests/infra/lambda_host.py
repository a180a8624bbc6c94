"""One Lambda execution environment for the deploy rehearsal: the function's code asset and the layer asset
from cdk.out, and nothing else on the path (run with ``python -I -S``: no site-packages, no PYTHONPATH).

    python -I -S lambda_host.py <code dir> <layer dir> <module.handler> <timeout seconds> [<packages dir>]

The layer is built for Lambda's arm64: its compiled dependencies (argon2's bindings) cannot load on this
machine. Given a packages dir (this machine's install of the same uv.lock), third-party packages come from
there and the product's own package from the layer; the rehearsal checks the layer holds every locked
runtime dependency.

Reads one JSON event per line on stdin and writes one JSON line per invocation on the original stdout:
``{"result": …}`` or ``{"error": "<type>: <message>"}``. What the function prints (logs, EMF metrics)
goes to stderr, as CloudWatch Logs would take it.
"""

import json
import os
import sys
import time
import traceback
import uuid


class Context:
    """The parts of Lambda's context object the product uses, with a real deadline."""

    def __init__(self, timeout_seconds: float) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "rehearsal"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    code_dir, layer_dir, handler_name, timeout = sys.argv[1:5]
    packages = sys.argv[5:6]
    sys.path[:0] = [code_dir, *packages, os.path.join(layer_dir, "python")]
    os.chdir(code_dir)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the function's own prints go to the log, never into the answers
    module_name, function_name = handler_name.rsplit(".", 1)
    try:
        handler = getattr(__import__(module_name), function_name)  # the cold start: settings are read here
    except Exception as error:
        traceback.print_exc()
        out.write(json.dumps({"error": f"init: {type(error).__name__}: {error}"}) + "\n")
        return
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = handler(request["event"], Context(float(request.get("timeout") or timeout)))
            answer = {"result": result}
        except Exception as error:
            traceback.print_exc()
            answer = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(answer, default=str) + "\n")


if __name__ == "__main__":
    main()
