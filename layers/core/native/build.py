"""Build ``verifyfeed._fastsplit`` (``fastsplit.c``) with the C compiler CPython was built with.

    python layers/core/native/build.py [--out DIR] [--lambda [--arch x86_64|arm64]]

One ``_fastsplit.abi3.so`` (CPython's limited API as of 3.11) that every later CPython loads, so a
runtime move needs no rebuild; with ``--lambda`` (the layer build, ``layers/core/Makefile``) no
module fails the build rather than ship a layer about 3x slower that nobody would notice:
docs/decisions.md#native-fast-path, #architecture.
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
# the oldest CPython the module is built for (Py_LIMITED_API): it loads on this one and every later one
LIMITED_API = (3, 11)
ABI3_SUFFIX = ".abi3.so"


class BuildError(Exception):
    """The module for the layer cannot be had: the message says why and what to do."""


def lambda_suffix(arch: str) -> str:
    """The suffix of the module for Lambda on ``arch``: the stable ABI's, the same on every machine
    (``arch`` is in the ELF header, which ``check_for_lambda`` reads)."""
    assert arch in ARCHITECTURES, arch
    return ABI3_SUFFIX


def elf_machine(library: Path) -> int | None:
    """The ``e_machine`` of a little-endian 64-bit ELF file, None if it is not one."""
    header = library.read_bytes()[:20]
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        return None
    return int.from_bytes(header[18:20], "little")


def _target(out: Path) -> Path:
    return out / f"_fastsplit{ABI3_SUFFIX}"


def _glibc_versions(library: Path) -> list[tuple[int, int]]:
    found = re.findall(rb"GLIBC_(\d+)\.(\d+)", library.read_bytes())
    return sorted({(int(major), int(minor)) for major, minor in found})


def build(out: Path, extra_flags: list[str] | None = None) -> Path:
    """Compile ``_fastsplit.abi3.so`` into ``out``, removing any other ``_fastsplit*.so`` there (a
    version-specific one would be imported before it). Any CPython >= 3.11's headers build the same
    module."""
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
        f"-DPy_LIMITED_API=0x{LIMITED_API[0]:02X}{LIMITED_API[1]:02X}0000",
        f"-I{include}",
        *(extra_flags or []),
        str(SOURCE),
        "-o",
        str(partial),
    ]
    subprocess.run(command, check=True)
    for stale in out.glob("_fastsplit*.so"):  # a version-specific build would shadow this one
        stale.unlink()
    partial.replace(target)
    return target


def host_builds_for(arch: str) -> str | None:
    """None when this interpreter can compile the module for Lambda on ``arch``, else why not."""
    name, version, system, machine = (
        sys.implementation.name,
        sys.version_info[:2],
        platform.system(),
        platform.machine(),
    )
    if (
        name == "cpython"
        and version >= LIMITED_API
        and system == "Linux"
        and machine == ARCHITECTURES[arch][0]
    ):
        return None
    oldest = ".".join(map(str, LIMITED_API))
    return (
        f"this interpreter is {name} {version[0]}.{version[1]} on {system} {machine}, "
        f"not cpython >= {oldest} on Linux {ARCHITECTURES[arch][0]}"
    )


def check_for_lambda(library: Path, arch: str) -> None:
    """Raise ``BuildError`` unless ``library`` can be loaded by Lambda's CPython (3.11 or later) on
    ``arch``: a stable-ABI module (``*.abi3.so``) of that machine needing no glibc newer than 2.17."""
    if not library.name.endswith(lambda_suffix(arch)):
        want = lambda_suffix(arch)
        raise BuildError(f"{library.name}: not a stable-ABI (abi3) module for {arch} (want *{want})")
    machine = elf_machine(library)
    if machine != ARCHITECTURES[arch][1]:
        raise BuildError(f"{library.name}: ELF machine {machine}, not {arch}'s {ARCHITECTURES[arch][1]}")
    newest = max(_glibc_versions(library), default=(0, 0))
    if newest > GLIBC_MAX:
        raise BuildError(f"{library.name}: needs glibc {newest}, newer than manylinux2014's {GLIBC_MAX}")


def build_for_lambda(out: Path, arch: str, prebuilt: str | None) -> Path:
    """The module for the layer in ``out``, checked (``check_for_lambda``). Compiled here only when
    this host can (CPython >= 3.11 on Linux on ``arch``'s machine); otherwise ``prebuilt``
    (``$FASTSPLIT_PREBUILT``) may name a module built on such a host (``build.py --lambda --arch
    arm64 --out DIR`` on a Graviton machine), which is checked — its ELF machine, its ABI suffix, its
    glibc — and copied. ``BuildError`` when neither gives a module, or compiling fails, or the module
    needs a newer glibc."""
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
            f"{arch} Linux host with CPython 3.13 (`make sam-build ARCHITECTURE={arch}`), or build "
            f"the module there (`python3 layers/core/native/build.py --lambda --arch {arch} --out DIR`, "
            "any CPython >= 3.11) "
            f"and set FASTSPLIT_PREBUILT to it (docs/decisions.md#architecture)"
        )
    try:
        check_for_lambda(target, arch)
    except BuildError:
        target.unlink()
        raise
    return target


def main(argv: list[str]) -> int:
    """Exit 0 when built, 1 when not (the reason on stderr). ``--out`` defaults to the core package,
    next to its sources (for tests, the demo and the benchmark). With ``--lambda`` the module is for
    Lambda's Python on Linux on ``--arch`` (default ``$ARCHITECTURE``, else x86_64: the template's
    ``Architecture`` parameter)."""
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
