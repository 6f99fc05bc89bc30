"""``verifyfeed --local`` finds the stack ``make up`` runs by its ``.local-state/stack.json``, and
only while the process it names is alive (a stack killed outright leaves a stale file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from verifyfeed_cli.target import local_state


def write_state(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stack.json").write_text(json.dumps({"pid": pid, "aws_endpoint": "http://127.0.0.1:1"}))


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_found_from_a_folder_below_while_its_process_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERIFYFEED_STATE_DIR", raising=False)
    write_state(tmp_path / ".local-state", os.getpid())
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    state = local_state(below)
    assert state is not None and state["pid"] == os.getpid()


def test_a_stale_file_of_a_dead_process_is_no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERIFYFEED_STATE_DIR", raising=False)
    write_state(tmp_path / ".local-state", dead_pid())
    assert local_state(tmp_path) is None


def test_the_state_dir_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(tmp_path / ".local-state", os.getpid())
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("VERIFYFEED_STATE_DIR", str(elsewhere))
    assert local_state(tmp_path) is None
    write_state(elsewhere, os.getpid())
    assert local_state(tmp_path) is not None
