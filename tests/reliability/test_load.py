"""Load through the local stack, in a process of its own (``tests/reliability/load.py``).

The scaled-down run (5,000 rows, 100 + 100 concurrent callbacks) is part of the default suite; the
full-size one (200,000 rows, 1,000 + 1,000 callbacks from 1,000 client threads) is marked ``load``,
deselected by default, and run by ``make load``. Both assert only outcomes that hold however busy
the machine is — every row accounted for, each accepted row upstream exactly once, nothing
dead-lettered, each callback's final answer (its sender retries 5xx and refused connections, as
the upstream's does), one transition per audit, no plaintext — after waiting on conditions with
deadlines. Timings and retry counts are printed (and the full run's figures written to
``.local-state/load-figures.json``), never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.load import register_identities
from tests.reliability.support import find_pii

ROOT = Path(__file__).resolve().parents[2]
_PASSED_ON = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER"})


def run_load(tmp_path: Path, rows: int, callbacks: int, clients: int, timeout_s: int) -> dict[str, Any]:
    out = tmp_path / "figures.json"
    # a clean environment: no AWS endpoint (it starts its own moto server), and none of the settings
    # other fixtures of this session put into os.environ (CLOCK_NOW, table names, ...)
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ON or k.startswith("LC_")}
    env["PYTHONPATH"] = f"{ROOT / 'layers/core/python'}:{ROOT}"
    args = ["--rows", str(rows), "--callbacks", str(callbacks), "--clients", str(clients), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.load", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert out.exists(), done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in figures.items() if k != "checks"}, ensure_ascii=False, indent=1))

    failed = [name for name, ok in figures["checks"].items() if not ok]
    assert not failed, f"{failed}; exit {done.returncode}; {done.stderr[-2000:]}"
    assert done.returncode == 0 and figures["ok"] is True
    assert figures["rows"]["rows_upstream"] == figures["rows"]["rows_accepted"] > 0
    assert figures["rows"]["rows_upstream_twice"] == 0
    # what the process wrote (function logs on stdout, the runner's on stderr): no plaintext either
    register_identities(rows, callbacks)
    assert find_pii(done.stdout + done.stderr) == []
    assert done.stdout.count('"level"') > 10  # the scan had logs to look at
    return figures


@pytest.mark.integration
def test_load_scaled_down(tmp_path: Path) -> None:
    figures = run_load(tmp_path, rows=5_000, callbacks=100, clients=100, timeout_s=600)
    assert figures["callbacks_distinct"]["http_statuses"] == {"200": 100}
    assert figures["callbacks_identical"]["http_statuses"] == {"200": 50, "409": 50}


@pytest.mark.load
def test_load_full_size(tmp_path: Path) -> None:
    figures = run_load(tmp_path, rows=200_000, callbacks=1_000, clients=1_000, timeout_s=3_600)
    assert figures["callbacks_distinct"]["http_statuses"] == {"200": 1_000}
    assert figures["callbacks_identical"]["http_statuses"] == {"200": 500, "409": 500}
    state = ROOT / ".local-state"
    state.mkdir(exist_ok=True)
    (state / "load-figures.json").write_text(
        json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8"
    )
