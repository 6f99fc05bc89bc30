"""Build ``verifyfeed._fastsplit`` (``fastsplit.c``) with the C compiler CPython was built with.

    python layers/core/native/build.py [--out DIR] [--lambda]

Writes ``_fastsplit<EXT_SUFFIX>`` into ``DIR`` (default: the core package, next to its sources, for
tests, the demo and the benchmark). With ``--lambda`` (the layer build) the interpreter must be what
the functions run — CPython 3.11 on x86_64 Linux — and the result may need no newer glibc than
manylinux2014's 2.17 (Lambda's python3.11 runtime has 2.26); otherwise nothing is built and the layer
uses the pure-Python path (``repair_batches._take_plain_py``), which gives the same results, slower.
Exit 0 when built (with ``--lambda`` also when skipped or failed: the layer then works without it,
as said on stderr), 1 when compiling for local use failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fastsplit.c"
PACKAGE = HERE.parent / "python" / "verifyfeed"
GLIBC_MAX = (2, 17)


def _target(out: Path) -> Path:
    return out / f"_fastsplit{sysconfig.get_config_var('EXT_SUFFIX')}"


def _glibc_versions(library: Path) -> list[tuple[int, int]]:
    found = re.findall(rb"GLIBC_(\d+)\.(\d+)", library.read_bytes())
    return sorted({(int(major), int(minor)) for major, minor in found})


def build(out: Path, extra_flags: list[str] | None = None) -> Path:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    target = _target(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    command = [
        *cc,
        "-O2",
        "-fPIC",
        "-shared",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-fno-strict-aliasing",
        f"-I{include}",
        *(extra_flags or []),
        str(SOURCE),
        "-o",
        str(partial),
    ]
    subprocess.run(command, check=True)
    partial.replace(target)
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE)
    parser.add_argument("--lambda", dest="for_lambda", action="store_true")
    args = parser.parse_args(argv)
    if args.for_lambda:
        here = (sys.implementation.name, sys.version_info[:2], platform.system(), platform.machine())
        if here != ("cpython", (3, 11), "Linux", "x86_64"):
            print(f"fastsplit: not built for Lambda on {here}: the layer uses the pure-Python path")
            return 0
    try:
        # FASTSPLIT_CFLAGS: extra flags for a local build (make sanitize); never for the layer
        extra = [] if args.for_lambda else shlex.split(os.environ.get("FASTSPLIT_CFLAGS", ""))
        target = build(args.out, extra)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"fastsplit: compiling failed: {exc}", file=sys.stderr)
        if args.for_lambda:  # the layer still works, on the pure-Python path
            print("fastsplit: the layer uses the pure-Python path (same results, slower)", file=sys.stderr)
            return 0
        return 1
    if args.for_lambda:
        newest = max(_glibc_versions(target), default=(0, 0))
        if newest > GLIBC_MAX:
            target.unlink()
            print(f"fastsplit: needs glibc {newest}, newer than {GLIBC_MAX}: not shipped in the layer")
            return 0
    print(
        f"fastsplit: built {target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
