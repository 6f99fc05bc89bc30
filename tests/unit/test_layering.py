"""Where I/O may happen (issue 17): ``logic/`` reaches AWS only through ``ports.Services`` (the
interfaces of ``verifyfeed.ports``), so no logic module imports an AWS SDK, the stores, ``aws``,
``secrets`` or ``services`` (the AWS wiring)."""

from __future__ import annotations

import ast
from pathlib import Path

LOGIC = Path(__file__).resolve().parents[2] / "layers/core/python/verifyfeed/logic"
FORBIDDEN = (
    "boto3",
    "botocore",
    "mypy_boto3",
    "aws_lambda_powertools.utilities.streaming",
    "verifyfeed.aws",
    "verifyfeed.store",
    "verifyfeed.secrets",
    "verifyfeed.services",
)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "verifyfeed":
                names.update(f"verifyfeed.{alias.name}" for alias in node.names)
    return names


def test_no_logic_module_imports_an_aws_sdk() -> None:
    modules = sorted(LOGIC.glob("*.py"))
    assert len(modules) > 5
    found = {
        path.name: sorted(n for n in imported(path) if n.startswith(FORBIDDEN))
        for path in modules
        if any(n.startswith(FORBIDDEN) for n in imported(path))
    }
    assert found == {}


def test_the_check_sees_an_sdk_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from verifyfeed import aws\nfrom botocore.exceptions import ClientError\n")
    assert {"verifyfeed.aws", "botocore.exceptions"} <= imported(sample)


def test_importing_the_logic_loads_no_aws_sdk_nor_any_adapter() -> None:
    """What the logic runs on is only what ``ports`` says: importing every logic module (in a fresh
    interpreter) loads neither boto3 nor botocore's clients, nor ``store/``, ``aws``, ``secrets`` or
    ``services`` (the AWS wiring). Powertools' Metrics imports the bare ``botocore`` package for its
    user agent; nothing of botocore beyond it is loaded."""
    import subprocess
    import sys

    script = (
        "import importlib, pkgutil, sys\n"
        "import verifyfeed.logic as logic\n"
        "names = [m.name for m in pkgutil.iter_modules(logic.__path__)]\n"
        "for name in names: importlib.import_module('verifyfeed.logic.' + name)\n"
        "print(len(names))\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=LOGIC.parents[1]
    ).stdout.split("\n")
    assert int(out[0]) == len(list(LOGIC.glob("*.py"))) - 1  # every module but __init__
    loaded = set(out[1].split())
    assert "verifyfeed.logic.splitter" in loaded and "verifyfeed.ports" in loaded
    sdk = sorted(n for n in loaded if n.startswith(("boto3", "botocore.", "s3transfer", "mypy_boto3")))
    adapters = ("verifyfeed.store", "verifyfeed.aws", "verifyfeed.secrets", "verifyfeed.services")
    assert sdk == [] and sorted(n for n in loaded if n.startswith(adapters)) == []
