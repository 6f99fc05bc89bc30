"""Build ``verifyfeed._fastsplit`` (``fastsplit.c``) with the C compiler CPython was built with.

    python layers/core/native/build.py [--out DIR] [--lambda [--arch x86_64|arm64]]

Writes ``_fastsplit<EXT_SUFFIX>`` into ``DIR`` (default: the core package, next to its sources, for
tests, the demo and the benchmark); exit 0 when built, 1 when not.

With ``--lambda`` (the layer build, ``layers/core/Makefile``) the module is for the Lambda runtime:
CPython 3.11 on Linux, on ``--arch`` (default ``$ARCHITECTURE``, else x86_64: the template's
``Architecture`` parameter), needing no glibc newer than manylinux2014's 2.17 (the python3.11
runtime has 2.26). It is compiled here only when this interpreter is that runtime's (CPython 3.11,
Linux, the same machine); otherwise ``$FASTSPLIT_PREBUILT`` may name a module built on such a host
(``build.py --lambda --arch arm64 --out DIR`` on a Graviton machine), which is checked — its ELF
machine, its ABI suffix, its glibc — and copied. When neither gives a module, or compiling fails,
or the module needs a newer glibc, the layer build FAILS (exit 1, the reason on stderr): a layer
without the fast path would still be correct but about 3x slower, which nobody would notice
(docs/decisions.md#native-fast-path).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fastsplit.c"
PACKAGE = HERE.parent / "python" / "verifyfeed"
GLIBC_MAX = (2, 17)
# Lambda architecture -> (platform.machine() of a host that compiles for it, ELF e_machine, ABI tag)
ARCHITECTURES = {"x86_64": ("x86_64", 62, "x86_64-linux-gnu"), "arm64": ("aarch64", 183, "aarch64-linux-gnu")}
LAMBDA_PYTHON = (3, 11)


class BuildError(Exception):
    """The module for the layer cannot be had: the message says why and what to do."""


def lambda_suffix(arch: str) -> str:
    """The extension suffix CPython 3.11 on Lambda looks for on ``arch``."""
    return f".cpython-{LAMBDA_PYTHON[0]}{LAMBDA_PYTHON[1]}-{ARCHITECTURES[arch][2]}.so"


def elf_machine(library: Path) -> int | None:
    """The ``e_machine`` of a little-endian 64-bit ELF file, None if it is not one."""
    header = library.read_bytes()[:20]
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    return int.from_bytes(header[18:20], "little")


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


def host_builds_for(arch: str) -> str | None:
    """None when this interpreter can compile the module for Lambda on ``arch``, else why not."""
    here = (sys.implementation.name, sys.version_info[:2], platform.system(), platform.machine())
    wanted = ("cpython", LAMBDA_PYTHON, "Linux", ARCHITECTURES[arch][0])
    if here == wanted:
        return None
    major, minor = here[1]
    return (
        f"this interpreter is {here[0]} {major}.{minor} on {here[2]} {here[3]}, "
        f"not cpython 3.11 on Linux {wanted[3]}"
    )


def check_for_lambda(library: Path, arch: str) -> None:
    """Raise ``BuildError`` unless ``library`` can be loaded by Lambda's python3.11 on ``arch``."""
    if not library.name.endswith(lambda_suffix(arch)):
        want = lambda_suffix(arch)
        raise BuildError(f"{library.name}: not a CPython 3.11 module for {arch} (want *{want})")
    machine = elf_machine(library)
    if machine != ARCHITECTURES[arch][1]:
        raise BuildError(f"{library.name}: ELF machine {machine}, not {arch}'s {ARCHITECTURES[arch][1]}")
    newest = max(_glibc_versions(library), default=(0, 0))
    if newest > GLIBC_MAX:
        raise BuildError(f"{library.name}: needs glibc {newest}, newer than manylinux2014's {GLIBC_MAX}")


def build_for_lambda(out: Path, arch: str, prebuilt: str | None) -> Path:
    """The module for the layer in ``out``, compiled here or copied from ``prebuilt``, checked."""
    why_not = host_builds_for(arch)
    if why_not is None:
        try:
            target = build(out)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BuildError(f"compiling failed: {exc}") from exc
    elif prebuilt:
        source = Path(prebuilt)
        if not source.is_file():
            raise BuildError(f"FASTSPLIT_PREBUILT={prebuilt}: no such file")
        check_for_lambda(source, arch)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"_fastsplit{lambda_suffix(arch)}"
        shutil.copyfile(source, target)
    else:
        raise BuildError(
            f"cannot build the C fast path for Lambda {arch}: {why_not}. Build the layer on an "
            f"{arch} Linux host with CPython 3.11 (`make sam-build ARCHITECTURE={arch}`), or build "
            f"the module there (`python3.11 layers/core/native/build.py --lambda --arch {arch} --out DIR`) "
            f"and set FASTSPLIT_PREBUILT to it (docs/decisions.md#architecture)"
        )
    try:
        check_for_lambda(target, arch)
    except BuildError:
        target.unlink()
        raise
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE)
    parser.add_argument("--lambda", dest="for_lambda", action="store_true")
    parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), default=os.environ.get("ARCHITECTURE") or "x86_64"
    )
    args = parser.parse_args(argv)
    try:
        if args.for_lambda:
            target = build_for_lambda(args.out, args.arch, os.environ.get("FASTSPLIT_PREBUILT"))
        else:
            # FASTSPLIT_CFLAGS: extra flags for a local build (make sanitize); never for the layer
            target = build(args.out, shlex.split(os.environ.get("FASTSPLIT_CFLAGS", "")))
    except BuildError as exc:
        print(f"fastsplit: ERROR: {exc}", file=sys.stderr)
        if args.for_lambda:
            print(
                "fastsplit: the layer is not built: without the C fast path the splitter is about 3x slower",
                file=sys.stderr,
            )
        return 1
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"fastsplit: ERROR: compiling failed: {exc}", file=sys.stderr)
        return 1
    shown = target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target
    print(f"fastsplit: built {shown}" + (f" for Lambda {args.arch}" if args.for_lambda else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
