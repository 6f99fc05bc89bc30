"""`make up` / `verifyfeed --local ...` / `make down` end to end, as an operator runs them: separate
processes, on ports taken free for the test, with the stack's state in a folder of the test's own.

After `make down`, and after a start that failed, nothing may be left: not the recorded pid, not a
process of the stack, not a listening port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

from local.stack import alive
from tests import timeouts
from tests.conftest import ENV_AT_START

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "lost-repair" / "customers.csv"
CODE = f"{ROOT / 'layers/core/python'}:{ROOT}"


def tried(up: str) -> list[str]:
    """The commands `make up` prints to try, one per line after "Try"."""
    lines = up.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Try"))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_free(port: int) -> bool:
    """Nothing listens on it (connections in TIME_WAIT, as servers leave them, do not count)."""
    with closing(socket.socket()) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stack_processes(state_dir: Path) -> list[int]:
    """Processes of a stack started with this state folder (by their environment)."""
    marker = f"VERIFYFEED_STATE_DIR={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class Operator:
    """`make ...` and `verifyfeed ...` with the test's ports and state folder, no AWS variable set."""

    def __init__(self, state_dir: Path, ports: dict[str, int]) -> None:
        self.state_dir = state_dir
        self.ports = ports
        self.env = {k: v for k, v in ENV_AT_START.items() if not k.startswith("AWS_")}
        self.env.update({name: str(port) for name, port in ports.items()})
        self.env.update(VERIFYFEED_STATE_DIR=str(state_dir), POLL_SECONDS="1", UP_TIMEOUT="90")
        self.env.update(timeouts.GENEROUS)  # passed on to the functions: no test here is about timeouts

    def make(self, target: str, **variables: str) -> subprocess.CompletedProcess[str]:
        words = [f"{name}={value}" for name, value in variables.items()]
        return subprocess.run(
            ["make", "-s", target, *words],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def verifyfeed(self, *argv: str, local: bool = True) -> tuple[int, dict[str, Any], str]:
        done = subprocess.run(
            [sys.executable, "-m", "verifyfeed_cli", *(["--local"] if local else []), "--json", *argv],
            cwd=self.state_dir,
            env={**self.env, "PYTHONPATH": CODE},
            capture_output=True,
            text=True,
            timeout=240,
        )
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr

    def shell(self, line: str) -> subprocess.CompletedProcess[str]:
        """A command line as printed, run by the shell from the project's folder."""
        return subprocess.run(
            ["bash", "-c", line],
            cwd=ROOT,
            # this checkout's code (a venv shared between checkouts imports the one it was installed from)
            env={**self.env, "PYTHONPATH": CODE},
            capture_output=True,
            text=True,
            timeout=240,
        )

    def state(self) -> dict[str, Any] | None:
        path = self.state_dir / "stack.json"
        return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    ports = dict(zip(("AWS_PORT", "SANDBOX_PORT", "CALLBACK_PORT"), free_ports(3), strict=True))
    op = Operator(tmp_path / "state", ports)
    yield op
    # whatever a failed assertion left: stop it, so that one failure does not leak a stack
    subprocess.run(["make", "-s", "down"], cwd=ROOT, env=op.env, capture_output=True, timeout=60)
    for pid in stack_processes(op.state_dir):
        os.kill(pid, signal.SIGKILL)


def assert_nothing_left(op: Operator, pid: int | None) -> None:
    if pid is not None:
        assert not alive(pid), f"pid {pid} still runs"
    assert stack_processes(op.state_dir) == []
    assert all(port_free(port) for port in op.ports.values()), op.ports
    assert not (op.state_dir / "stack.json").exists()


def test_up_status_drop_and_down_leave_nothing_running(operator: Operator, tmp_path: Path) -> None:
    up = operator.make("up", PRICE_PER_RECORD="0.35")
    assert up.returncode == 0, up.stderr[-3000:]
    state = operator.state()
    assert state is not None and alive(state["pid"])
    assert stack_processes(operator.state_dir) == [state["pid"]]  # what assert_nothing_left looks for
    assert state["aws_endpoint"] == f"http://127.0.0.1:{operator.ports['AWS_PORT']}"
    assert state["sandbox_url"] == f"http://127.0.0.1:{operator.ports['SANDBOX_PORT']}"
    assert state["callback_url"].startswith(f"http://127.0.0.1:{operator.ports['CALLBACK_PORT']}/")
    assert state["aws_endpoint"] in up.stdout and state["callback_url"] in up.stdout
    assert not any(port_free(port) for port in operator.ports.values())

    # what make up prints to try runs as printed (its state folder named, the venv's verifyfeed)
    status_line, drop_line, down_line = tried(up.stdout)
    assert status_line == f"VERIFYFEED_STATE_DIR={operator.state_dir} .venv/bin/verifyfeed --local status"
    assert drop_line.endswith(".venv/bin/verifyfeed --local drop samples/lost-repair/customers.csv --wait")
    assert down_line == f"VERIFYFEED_STATE_DIR={operator.state_dir} make down"
    shown = operator.shell(status_line)
    assert shown.returncode == 0 and "Stack verifyfeed-local (local" in shown.stdout, shown.stderr
    # every row accounted for: 0, and the same summary as `verifyfeed status FILE`
    dropped = operator.shell(drop_line)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert (
        "Outcome:  done: every row uploaded (audits: passed), or rejected by our rules (exit code 0)"
        in dropped.stdout
    )
    assert "row(s) read" in dropped.stderr  # the progress display
    code, same, stderr = operator.verifyfeed("status", "lost-repair/customers.csv")
    assert code == 0, stderr
    job = same["job"]
    assert (job["key"], job["status"]) == ("lost-repair/customers.csv", "completed")
    assert job["rows_read"] == job["rows_accepted"] + job["rows_rejected"] > 0
    code, watched, _ = operator.verifyfeed("watch", "customers.csv", "--timeout", "30")
    assert code == 0 and watched["job"]["job_id"] == job["job_id"] and watched["accounted_for"] is True

    # no stack named: the local stack make up runs, said on stderr
    code, status, stderr = operator.verifyfeed("status", local=False)
    assert code == 0 and status["stack"]["bucket"] == state["bucket"]
    assert "verifyfeed: local stack verifyfeed-local, the one make up runs" in stderr

    # a dry run: read and reported like a real drop, nothing sent (the sandbox's records stay put)
    ledger = f"{state['sandbox_url']}/_sandbox/ledger"
    before = requests.get(ledger, timeout=30).json()["entries"]
    rehearsal = tmp_path / "rehearsal.csv"
    rehearsal.write_bytes(SAMPLE.read_bytes())
    code, dry, stderr = operator.verifyfeed("drop", str(rehearsal), "--dry-run", "--wait", "--timeout", "120")
    assert code == 0, stderr
    assert (dry["job"]["key"], dry["job"]["status"]) == ("dry-run/lost-repair/rehearsal.csv", "dry_run")
    # ... of rows the real drop sent already: the resend ledger (the template's default window)
    # rejects every one of them as already uploaded, and nothing else changes
    assert dry["job"]["rows_read"] == job["rows_read"] and dry["accounted_for"] is True
    assert (dry["job"]["rows_accepted"], dry["job"]["rows_already_uploaded"]) == (0, job["rows_accepted"])
    assert dry["would_send"] == {"batches": 0, "records_charged_if_accepted": 0}
    assert requests.get(ledger, timeout=30).json()["entries"] == before  # no request reached upstream

    # a file the splitter would refuse as a whole is refused before it is uploaded, saying what it is
    # (issue 25), with --kind too: no job, nothing in the bucket
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, refused, stderr = operator.verifyfeed(
        "drop", str(empty), "--kind", "lost-repair", "--wait", "--timeout", "120"
    )
    assert code == 2 and refused["exit_code"] == 2, stderr
    assert "empty.csv not uploaded (file.empty): file is empty" in refused["error"]
    code, listed, _ = operator.verifyfeed("status", "empty.csv")
    assert code == 1 and "no job for 'empty.csv'" in listed["error"]

    # rehearsal: the answer to a charged batch is lost -> one unknown batch, held, not resent: 6, and
    # what a re-drive may charge again at the price make up was given
    code, faults, stderr = operator.verifyfeed(
        "sandbox", "fault", '{"endpoint":"lost_repair","reset":true,"phase":"after","count":1}'
    )
    assert code == 0 and faults["faults"][0]["remaining"] == 1, stderr
    lost = tmp_path / "lost-answer.csv"
    lost.write_bytes(SAMPLE.read_bytes())
    # the same people again: the resend ledger would refuse them all, the override sends them
    code, unknown, stderr = operator.verifyfeed("drop", str(lost), "--resend", "--wait", "--timeout", "120")
    assert code == 6, stderr
    assert unknown["job"]["key"] == "lost-repair/resend/lost-answer.csv"
    assert unknown["job"]["status"] == "completed_with_errors"
    assert unknown["job"]["batches_unknown"] == 1
    (step,) = unknown["next_steps"]
    assert step["command"].endswith(
        f"--local redrive --unknown --job {unknown['job']['job_id']} --i-understand-this-may-charge-twice"
    )
    records = job["rows_accepted"]
    assert step["cost"] == {
        "records": records,
        "price_per_record": 0.35,
        "currency": "CNY",
        "amount": round(records * 0.35, 2),
    }

    # rehearsal: the upstream refuses one row (state "0"): its batch is split until the row is alone;
    # 5, and what to do is fix the row and drop the sheet again: nothing is offered to re-drive
    code, refusing, stderr = operator.verifyfeed("sandbox", "refuse", "HT202600002")
    assert code == 0 and refusing["records"] == {"HT202600002": "失败"}, stderr
    one_bad = tmp_path / "one-bad-row.csv"
    one_bad.write_bytes(SAMPLE.read_bytes())
    code, split, stderr = operator.verifyfeed("drop", str(one_bad), "--resend", "--wait", "--timeout", "120")
    assert code == 5, stderr
    assert [r["auth_code"] for r in split["refused_records"]] == ["HT202600002"]
    assert split["records"]["refused"] == 1 and split["records"]["uploaded"] == job["rows_accepted"] - 1
    assert split["job"]["batches_bisected"] >= 1
    (fix,) = split["next_steps"]
    assert fix["command"] is None and fix["doc"] == "docs/operations.md#re-drop"
    assert operator.verifyfeed("sandbox", "refuse", "")[0] == 0

    pid = state["pid"]
    down = operator.shell(down_line)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(operator, pid)
    code, _, stderr = operator.verifyfeed("status")
    assert code == 3 and "make up" in stderr


def test_a_failed_start_leaves_nothing_running(operator: Operator) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", operator.ports["SANDBOX_PORT"]))
    taken.listen()
    try:
        up = operator.make("up")
        assert up.returncode != 0
        port = operator.ports["SANDBOX_PORT"]
        assert f"up: port {port} (SANDBOX_PORT) is taken by another process" in up.stderr, up.stderr
        assert "Traceback" not in up.stderr and "starting" not in up.stderr  # nothing was started
        assert stack_processes(operator.state_dir) == []
        assert not (operator.state_dir / "stack.json").exists()
        assert port_free(operator.ports["AWS_PORT"]) and port_free(operator.ports["CALLBACK_PORT"])
    finally:
        taken.close()
    down = operator.make("down")
    assert down.returncode == 0 and "no local stack" in down.stderr
