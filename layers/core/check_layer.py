"""Check a built core layer: ``python check_layer.py ARTIFACTS_DIR --lock requirements.lock --arch ARCH``.

The last step of the layer build (``layers/core/Makefile``); exit 1 with the reasons when

- a package of the lock is missing, at another version, or there more than once (two
  ``*.dist-info`` of one name: two pydantics, say, one shadowing the other), or a package not in
  the lock was installed;
- a dependency is outside ``python/lib/python3.11/site-packages``, the directory Lambda puts first
  on ``sys.path`` (before ``/opt/python``, where the Powertools layer has its own pydantic);
- the splitter's C fast path for ``ARCH`` is missing or not loadable by Lambda's python3.11 there;
- the operators' CLI (``verifyfeed_cli``, or the ``verifyfeed/cli`` it once was) is in the layer:
  the functions never import it (tests/unit/test_build.py checks the sources).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
SITE = Path("python/lib/python3.11/site-packages")
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


def problems(artifacts: Path, lock: dict[str, str], arch: str) -> list[str]:
    found: list[str] = []
    seen: dict[str, list[str]] = {}
    for name, version, where in installed(artifacts):
        seen.setdefault(name, []).append(version)
        if where.parent.resolve() != (artifacts / SITE).resolve():
            found.append(f"{name} {version} is in {where.parent.relative_to(artifacts)}, not in {SITE}")
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--arch", required=True)
    args = parser.parse_args(argv)
    lock = locked(args.lock)
    found = problems(args.artifacts, lock, args.arch)
    for problem in found:
        print(f"layer: ERROR: {problem}", file=sys.stderr)
    if found:
        return 1
    print(f"layer: {len(lock)} locked packages, each once, in {SITE}; C fast path for {args.arch}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
