"""Where I/O may happen (issue 17): ``logic/`` reaches AWS only through ``Services`` (the stores and
the ports), so no logic module imports an AWS SDK or ``verifyfeed.aws``."""

from __future__ import annotations

import ast
from pathlib import Path

LOGIC = Path(__file__).resolve().parents[2] / "layers/core/python/verifyfeed/logic"
FORBIDDEN = ("boto3", "botocore", "mypy_boto3", "aws_lambda_powertools.utilities.streaming", "verifyfeed.aws")


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
