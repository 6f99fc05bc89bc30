"""A cold start of one function in this fresh interpreter:
``python -m bench.cold_import FUNCTION OUT [EVENT]`` (``FUNCTION`` ``floor``: the libraries only).

Times loading ``functions/<FUNCTION>/app.py`` the way Lambda does (the module is executed, so
module-level work — building the services, creating clients — counts), then, given an ``EVENT``
file, the first invocation. The environment is the caller's (the function's own variables from
the template). Writes ``{"import_ms", "import_cpu_ms", "modules", "first_invocation_ms"}`` as
JSON to ``OUT`` (``modules``: how many modules the import loaded).
"""

from __future__ import annotations

import importlib.util
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def load_handler(function: str) -> Any:
    """``local.runtime.load_handler`` without importing it (it imports boto3 itself)."""
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"verifyfeed_fn_{function}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))  # as in Lambda, the function's own folder is importable
    spec.loader.exec_module(module)
    return module.lambda_handler


def load_floor() -> Any:
    """What any callback written with these libraries pays, without our code: the Powertools event
    handler, Logger, Metrics and Tracer, Parameters, boto3 with one DynamoDB client, a pydantic
    model."""
    import boto3
    import pydantic
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.utilities import parameters

    class Reply(pydantic.BaseModel):
        code: str
        message: str = ""

    Logger(), Metrics(), Tracer(), APIGatewayRestResolver()
    return boto3.session.Session().client("dynamodb"), parameters, Reply


def main(argv: list[str]) -> int:
    function, out = argv[0], Path(argv[1])
    before = set(sys.modules)
    cpu = _cpu_ms()
    started = time.perf_counter()
    handler = load_floor() if function == "floor" else load_handler(function)
    result: dict[str, object] = {
        "import_ms": (time.perf_counter() - started) * 1000,
        "import_cpu_ms": _cpu_ms() - cpu,
        "modules": len(set(sys.modules) - before),
    }
    if len(argv) > 2:
        from local.lambda_context import new_context

        event = json.loads(Path(argv[2]).read_text())
        started = time.perf_counter()
        reply = handler(event, new_context(function, 10, 512))
        result["first_invocation_ms"] = (time.perf_counter() - started) * 1000
        result["first_status"] = reply.get("statusCode") if isinstance(reply, dict) else None
    out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
