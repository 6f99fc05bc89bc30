"""Check a built core layer:
``python3.13 check_layer.py ARTIFACTS_DIR --lock requirements.lock --arch ARCH --python-version 3.13``.

The last step of the layer build (``layers/core/Makefile``), run by the runtime's CPython; exit 1
with the reasons when the layer is not exactly the lock where Lambda looks first (``problems``) or
does not run the splitter's core with its C fast path alone (``import_problems``). Why:
docs/decisions.md#reproducible-runtime, #native-fast-path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
RUNTIME_PYTHON = "3.13"  # the layer Makefile's LAMBDA_PYTHON_VERSION, template.yaml's Globals Runtime


def site(python_version: str = RUNTIME_PYTHON) -> Path:
    """Where the layer keeps its dependencies: Lambda puts /opt/<this> first on sys.path."""
    return Path(f"python/lib/python{python_version}/site-packages")


SITE = site()
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> dict[str, str]:
    """``{normalised name: version}`` of every pin in a pip-compile / uv lock file."""
    return {normalise(name): version for name, version in PIN.findall(lock.read_text())}


def installed(root: Path) -> list[tuple[str, str, Path]]:
    """``(normalised name, version, dist-info dir)`` of every distribution anywhere under ``root``."""
    found = []
    for metadata in sorted(root.rglob("*.dist-info/METADATA")):
        head = metadata.read_text(errors="replace").splitlines()[:20]
        fields = dict(line.split(": ", 1) for line in head if ": " in line)
        found.append((normalise(fields.get("Name", "?")), fields.get("Version", "?"), metadata.parent))
    return found


def native_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("native_build", HERE / "native" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems(
    artifacts: Path, lock: dict[str, str], arch: str, python_version: str = RUNTIME_PYTHON
) -> list[str]:
    """What is wrong with the layer's files:

    - a package of the lock is missing, at another version, or there more than once (two
      ``*.dist-info`` of one name: two pydantics, say, one shadowing the other), or a package not in
      the lock was installed;
    - a dependency is outside ``python/lib/python<VERSION>/site-packages``, the directory Lambda puts
      first on ``sys.path`` (before ``/opt/python``, where the Powertools layer has its own pydantic);
    - the splitter's C fast path for ``arch`` is missing or not a module Lambda's CPython loads there;
    - the operators' CLI (``verifyfeed_cli``, or the ``verifyfeed/cli`` it once was) is in the layer:
      the functions never import it (tests/unit/test_build.py checks the sources)."""
    found: list[str] = []
    seen: dict[str, list[str]] = {}
    where_site = site(python_version)
    for name, version, where in installed(artifacts):
        seen.setdefault(name, []).append(version)
        if where.parent.resolve() != (artifacts / where_site).resolve():
            found.append(f"{name} {version} is in {where.parent.relative_to(artifacts)}, not in {where_site}")
        if name not in lock:
            found.append(f"{name} {version} is not in the lock")
        elif version != lock[name]:
            found.append(f"{name} is {version}, the lock says {lock[name]}")
    for name, versions in seen.items():
        if len(versions) > 1:
            listed = ", ".join(sorted(versions))
            found.append(f"{name} is installed {len(versions)} times ({listed}): one would shadow the other")
    found += [
        f"{name} {version} (locked) is not installed" for name, version in lock.items() if name not in seen
    ]
    found += [
        f"the operators' CLI is in the layer: {path.relative_to(artifacts)}"
        for pattern in ("verifyfeed_cli", "verifyfeed/cli")
        for path in sorted((artifacts / "python").rglob(pattern))
    ]
    build = native_build()
    modules = sorted((artifacts / "python" / "verifyfeed").glob("_fastsplit*.so"))
    if not modules:
        found.append(f"no C fast path (verifyfeed/_fastsplit*.so) for {arch}")
    for module in modules:
        try:
            build.check_for_lambda(module, arch)
        except build.BuildError as exc:
            found.append(f"C fast path: {exc}")
    return found


# Run by the runtime's CPython with nothing on sys.path but the layer (argv[1:], in Lambda's order)
# and the standard library: the splitter's core on sample rows with the C fast path and without it.
IMPORT_CHECK = r"""
import csv, io, json, sys
sys.path[:0] = sys.argv[1:]
from verifyfeed import _fastsplit
from verifyfeed.config import LegacyIdPolicy
from verifyfeed.ingest.readers import open_rows
from verifyfeed.logic import repair_batches
from verifyfeed.models.records import JobKind

def id18(body):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]

names = ["张三", "Alice", "阿卜杜·热合曼", "李四", "Bob"]
phones = ["13800138000", "", "+86 139-0000-0000", "(86)137 0000 0000", "12345"]
rows = [
    [names[i % 5], id18(f"11010519{80 + i % 20}0{1 + i % 9}1{i % 10}{i:03d}"), phones[i % 5], f"K{i}"]
    for i in range(300)
]
rows[7][1] = rows[3][1]  # a duplicate ID number
rows[11][1] = rows[11][1][:17] + ("1" if rows[11][1][17] == "0" else "0")  # a wrong check digit
rows[13][3] = "k3"  # the code of row 3, another letter case
rows[17][0] = "张 三"  # normalised by the rules, not by the fast path
text = io.StringIO()
csv.writer(text, lineterminator="\r\n").writerows([["姓名", "身份证号", "曾用手机号", "授权码"], *rows])

def split(native):
    batches, rejected = [], []
    source = open_rows(io.BytesIO(text.getvalue().encode()), "sample.csv", JobKind.LOST_REPAIR)
    counts = repair_batches.split_repair_rows(
        source, legacy=LegacyIdPolicy.CONVERT, batch_size=100, native=native,
        reject=lambda number, why, values, first: rejected.append([number, str(why), first]),
        emit=lambda batch: batches.append(batch.records_json.decode()))
    return {"accepted": counts.rows_accepted, "rejected": rejected, "batches": batches}

fast, slow = split(True), split(False)
print(json.dumps({
    "python": sys.version.split()[0], "module": _fastsplit.__file__, "native": repair_batches.NATIVE,
    "agree": fast == slow, "accepted": fast["accepted"], "rejected": len(fast["rejected"]),
}))
"""


def import_problems(artifacts: Path, arch: str, python_version: str) -> tuple[list[str], str]:
    """The layer imported as Lambda's CPython ``python_version`` would: ``(problems, summary)``. A
    problem when this interpreter is not CPython ``python_version``; on a host of ``arch``, when the
    layer alone — its two directories in Lambda's order, no site-packages of this interpreter — does
    not import the splitter's core with the C fast path loaded from the layer, or the fast path and
    the pure-Python path disagree on a sample of rows (accepted, rejected and why, batches byte for
    byte). On another host it is not imported, which is no problem."""
    here = ".".join(map(str, sys.version_info[:2]))
    if sys.implementation.name != "cpython" or here != python_version:
        return [f"cannot import the layer as Lambda's python{python_version}: this is Python {here}"], ""
    if platform.machine() != native_build().ARCHITECTURES[arch][0]:
        return [], f"not imported (this host is {platform.machine()}, the layer is for {arch})"
    paths = [str((artifacts / site(python_version)).resolve()), str((artifacts / "python").resolve())]
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT_CHECK, *paths],
        capture_output=True,
        text=True,
        check=False,
        cwd=artifacts,
    )
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"the layer does not import on Python {here}: {last}"], ""
    result = json.loads(run.stdout)
    found = []
    module = Path(result["module"])
    if not result["native"] or not module.is_relative_to(artifacts.resolve()):
        found.append(f"the C fast path was not loaded from the layer (verifyfeed._fastsplit is {module})")
    if not result["agree"]:
        found.append(f"the C fast path and the pure-Python path disagree on Python {result['python']}")
    summary = (
        f"imported alone by CPython {result['python']}: the C fast path ({module.name}) and the "
        f"pure-Python path agree ({result['accepted']} rows accepted, {result['rejected']} rejected)"
    )
    return found, summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--python-version", default=RUNTIME_PYTHON)
    args = parser.parse_args(argv)
    lock = locked(args.lock)
    found = problems(args.artifacts, lock, args.arch, args.python_version)
    summary = ""
    if not found:
        found, summary = import_problems(args.artifacts, args.arch, args.python_version)
    for problem in found:
        print(f"layer: ERROR: {problem}", file=sys.stderr)
    if found:
        return 1
    where = site(args.python_version)
    print(
        f"layer: {len(lock)} locked packages, each once, in {where}; C fast path for {args.arch}; {summary}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
