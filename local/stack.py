"""``make up`` / ``make down``: the local stack of ``make demo``, left running in the background.

    python -m local.stack up      start ``serve`` in a process of its own, return once it is ready
    python -m local.stack down    stop it; nothing is left running
    python -m local.stack serve   the stack in the foreground, until SIGTERM/SIGINT

Its options and ports, ``stack.json`` and exit codes: README.md#the-stack-left-running-make-up-make-down.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.demo import DemoOptions, configure_logging, redirect_stdout, say
from local.runner import ROOT, LocalRunner, shown
from verifyfeed_cli.target import running as alive

DEFAULT_PORTS = {"AWS_PORT": 8795, "SANDBOX_PORT": 8796, "CALLBACK_PORT": 8797}
STOP_TIMEOUT_S = 20.0


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("VERIFYFEED_STATE_DIR", "").strip() or ROOT / ".local-state").resolve()


def _port(env: Mapping[str, str], name: str) -> int:
    text = env.get(name, "").strip()
    return int(text) if text else DEFAULT_PORTS[name]


def read_state(folder: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((folder / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _is_ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"local.stack" in cmdline and b"serve" in cmdline


# ---- serve -------------------------------------------------------------------------------------


def serve(env: Mapping[str, str]) -> int:
    folder = state_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "stack.log"
    redirect_stdout(log_file).close()  # handler logs go to the log; nothing is printed
    configure_logging(log_file)
    log = logging.getLogger("local.stack")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    demo = DemoOptions.from_env(env)
    options = replace(
        demo.runner,
        aws_port=_port(env, "AWS_PORT"),
        sandbox_port=_port(env, "SANDBOX_PORT"),
        callback_port=_port(env, "CALLBACK_PORT"),
        watch_bucket=True,
    )
    runner = LocalRunner(options)
    state_file = folder / "stack.json"
    try:
        started_at = datetime.now(UTC).isoformat()  # when the functions' clock starts (at CLOCK_NOW)
        runner.start()
        assert runner.stack is not None
        state = {
            "pid": os.getpid(),
            "stack": runner.stack.stack_name,
            "region": runner.stack.region,
            "aws_endpoint": os.environ["AWS_ENDPOINT_URL"],
            "bucket": runner.stack.bucket,
            "work_queue_url": runner.stack.queue_url,
            "dlq_url": runner.stack.dlq_url,
            "jobs_table": os.environ.get("JOBS_TABLE", ""),
            "audits_table": os.environ.get("AUDITS_TABLE", ""),
            "sandbox_url": runner.sandbox.url if runner.sandbox else None,
            "upstream_url": runner.upstream_url,
            "callback_url": runner.callback_url,
            "clock_now": options.clock_now or None,
            # what the functions take a record to cost (make up PRICE_PER_RECORD=...): the CLI shows it
            "price_per_record": env.get("PRICE_PER_RECORD", "").strip() or None,
            "log": str(log_file),
            "started_at": started_at,
        }
        partial = folder / "stack.json.tmp"
        partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        partial.replace(state_file)  # readers never see half a file
        log.info("local stack ready: %s", json.dumps(state))
        stop.wait()
        return 0
    except Exception:
        log.exception("the local stack failed")
        return 1
    finally:
        runner.stop()
        current = read_state(folder)
        if current is not None and current.get("pid") == os.getpid():
            state_file.unlink(missing_ok=True)
        log.info("local stack stopped")


# ---- up / down ---------------------------------------------------------------------------------


def up(env: Mapping[str, str]) -> int:
    folder = state_dir(env)
    running = read_state(folder)
    if running is not None and alive(int(running.get("pid", 0))):
        say(f"up: already running (pid {running['pid']}); `make down` stops it")
        print(describe(running, folder))
        return 0
    taken = [
        (name, port) for name, port in ((n, _port(env, n)) for n in DEFAULT_PORTS) if port and not _free(port)
    ]
    if taken:
        for name, port in taken:
            say(
                f"up: port {port} ({name}) is taken by another process: stop it, or give another port, "
                f"e.g. make up {name}={port + 100}"
            )
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stack.json").unlink(missing_ok=True)  # a stale one, of a stack killed outright
    log_file = folder / "stack.log"
    log_file.write_text("", encoding="utf-8")
    started = time.monotonic()
    timeout_s = float(env.get("UP_TIMEOUT", "").strip() or 60)
    say("up: starting moto, the sandbox and the functions ...")
    child = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "serve"],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log_file.open("a", encoding="utf-8"),
        start_new_session=True,  # its own process group: `down` stops all of it, and only it
    )
    try:
        return _wait_ready(child, folder, log_file, started, timeout_s)
    except KeyboardInterrupt:
        say("up: interrupted; stopping it")
        _stop(child.pid, child)
        return 130


def _free(port: int) -> bool:
    """Nothing listens on ``port`` on the loopback (a connection in TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_ready(
    child: subprocess.Popen[bytes], folder: Path, log_file: Path, started: float, timeout_s: float
) -> int:
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        state = read_state(folder)
        if state is not None and state.get("pid") == child.pid:
            say(f"up: ready in {time.monotonic() - started:.1f} s")
            print(describe(state, folder))
            return 0
        if child.poll() is not None:
            say(f"up: the stack failed to start (exit code {child.returncode}); from {shown(log_file)}:")
            say(_tail(log_file))
            return 1
        time.sleep(0.1)
    say(f"up: not ready after {timeout_s:g} s; stopping it. From {shown(log_file)}:")
    _stop(child.pid, child)
    say(_tail(log_file))
    return 1


def down(env: Mapping[str, str]) -> int:
    folder = state_dir(env)
    state = read_state(folder)
    if state is None:
        say("down: no local stack is running")
        return 0
    pid = int(state.get("pid", 0))
    if pid and alive(pid) and _is_ours(pid):
        say(f"down: stopping the local stack (pid {pid}) ...")
        if not _stop(pid, None):
            say(f"down: pid {pid} still runs after SIGKILL")
            return 1
    (folder / "stack.json").unlink(missing_ok=True)
    say("down: stopped; nothing is left running")
    return 0


def _stop(pid: int, child: subprocess.Popen[bytes] | None) -> bool:
    """SIGTERM to the process group, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                return True
            if child is None and not alive(pid):
                return True
            time.sleep(0.05)
    return not alive(pid)


def describe(state: Mapping[str, Any], folder: Path) -> str:
    lines = [
        f"Local stack {state['stack']} (pid {state['pid']}):",
        f"  AWS (moto)   {state['aws_endpoint']}  region {state['region']}",
        f"  bucket       s3://{state['bucket']}",
        f"  work queue   {state['work_queue_url']}",
        f"  dead letters {state['dlq_url']}",
        f"  tables       {state['jobs_table']}, {state['audits_table']}",
        f"  upstream     {state['upstream_url']}" + ("  (the sandbox)" if state.get("sandbox_url") else ""),
        f"  callbacks    {state['callback_url']}",
        f"  state        {shown(folder / 'stack.json')}; logs {shown(Path(state['log']))}",
        "Try (from this folder):",
        *(f"  {command}" for command in try_commands(folder)),
    ]
    return "\n".join(lines)


def try_commands(folder: Path) -> list[str]:
    """Commands that run as printed from the project's folder: the venv's ``verifyfeed`` (not on
    PATH), the state folder when it is not the default one."""
    prefix = "" if folder == state_dir({}) else f"VERIFYFEED_STATE_DIR={shlex.quote(str(folder))} "
    script = Path(sys.executable).parent / "verifyfeed"
    cli = (
        _from_root(script)
        if script.exists()
        else f"PYTHONPATH=layers/core/python:. {_from_root(Path(sys.executable))} -m verifyfeed_cli"
    )
    return [
        f"{prefix}{cli} --local status",
        f"{prefix}{cli} --local drop samples/lost-repair/customers.csv --wait",
        f"{prefix}make down",
    ]


def _from_root(path: Path) -> str:
    """``path`` as a command run from the project's folder names it (a venv's symlink kept as is)."""
    try:
        return str(path.absolute().relative_to(ROOT))
    except ValueError:
        return str(path.absolute())


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text[-lines:])


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "serve": serve}
    if len(argv) != 1 or argv[0] not in commands:
        say("usage: python -m local.stack up|down|serve")
        return 2
    return commands[argv[0]](os.environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
