"""``python -m sandbox``: run the upstream sandbox until SIGINT/SIGTERM.

Every flag falls back to an environment variable, then to a local default.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sandbox.config import (
    DEFAULT_API_ID,
    DEFAULT_API_KEY,
    DEFAULT_CALLBACK_SECRET,
    DEFAULT_PORT,
    SandboxConfig,
)
from sandbox.server import start_sandbox


def _env(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name, "")
        if value:
            return value
    return default


def parse_args(argv: Sequence[str] | None = None) -> SandboxConfig:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Run the upstream sandbox.")
    parser.add_argument("--host", default=_env("SANDBOX_HOST", default="127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("SANDBOX_PORT", default=str(DEFAULT_PORT))))
    parser.add_argument("--api-id", default=_env("API_ID", "UPSTREAM_API_ID", default=DEFAULT_API_ID))
    parser.add_argument("--api-key", default=_env("UPSTREAM_API_KEY", default=DEFAULT_API_KEY))
    parser.add_argument("--callback-url", default=_env("CALLBACK_URL"))
    parser.add_argument("--callback-secret", default=_env("CALLBACK_SECRET", default=DEFAULT_CALLBACK_SECRET))
    parser.add_argument(
        "--decision-delay", type=float, default=float(_env("DECISION_DELAY", default="2.0")), help="seconds"
    )
    parser.add_argument("--clock-now", default=_env("CLOCK_NOW"), help="ISO instant with offset; empty = now")
    parser.add_argument(
        "--clock-mode",
        choices=("running", "manual"),
        default=_env("SANDBOX_CLOCK_MODE", default="running"),
        help="manual: the clock moves only through POST /_sandbox/clock/advance",
    )
    parser.add_argument(
        "--audit-auth",
        choices=("headers", "body"),
        default=_env("AUDIT_AUTH", default="headers"),
        help="where carrier-audit requests carry authinfo (docs/decisions.md#audit-auth)",
    )
    parser.add_argument(
        "--shapes",
        choices=("table", "mock", "strings"),
        default=_env("SANDBOX_SHAPES", default="table"),
        help="how ids and statuses are typed in answers (sandbox/README.md)",
    )
    parser.add_argument("--seed", type=int, default=int(_env("SANDBOX_SEED", default="0")))
    parser.add_argument("--log-level", default=_env("SANDBOX_LOG_LEVEL", default="INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return SandboxConfig(
        host=args.host,
        port=args.port,
        api_id=args.api_id,
        api_key=args.api_key,
        callback_url=args.callback_url,
        callback_secret=args.callback_secret,
        decision_delay_s=args.decision_delay,
        clock_now=args.clock_now,
        clock_mode=args.clock_mode,
        audit_auth=args.audit_auth,
        shapes=args.shapes,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    handle = start_sandbox(config)
    print(f"sandbox listening on {handle.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        handle.stop()
    logging.getLogger("sandbox").info("sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
