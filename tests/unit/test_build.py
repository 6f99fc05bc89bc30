"""The build: the layer's C fast path fails the build loudly where it cannot be had
(layers/core/native/build.py --lambda), the layer check (layers/core/check_layer.py) refuses a
layer with two copies of a package or one out of place, and the locks agree with the requirements
and with each other (docs/decisions.md#architecture, #reproducible-runtime)."""

from __future__ import annotations

import ast
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "layers/core/native/build.py"
CHECK = ROOT / "layers/core/check_layer.py"
DEV_LOCK = ROOT / "requirements-dev.lock"
LAYER_LOCK = ROOT / "layers/core/requirements.lock"
HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]
OTHER_ARCH = "arm64" if HOST_ARCH == "x86_64" else "x86_64"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = load(BUILD, "native_build")
check_layer = load(CHECK, "check_layer")


def run_build(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("ARCHITECTURE", "FASTSPLIT_PREBUILT")}
    return subprocess.run(
        [sys.executable, str(BUILD), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
    )


@pytest.fixture(scope="module")
def host_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module for Lambda on this host's architecture, as the layer build makes it."""
    out = tmp_path_factory.mktemp("host")
    run = run_build("--lambda", "--arch", HOST_ARCH, "--out", str(out))
    assert run.returncode == 0, run.stderr
    (module,) = out.glob("_fastsplit*.so")
    assert module.name.endswith(build.lambda_suffix(HOST_ARCH))
    return module


# -- the C fast path for the layer: built, or the build fails ---------------------------------------


def test_the_layer_build_for_an_architecture_this_host_cannot_build_fails_loudly(tmp_path: Path) -> None:
    run = run_build("--lambda", "--arch", OTHER_ARCH, "--out", str(tmp_path))
    assert run.returncode == 1
    assert f"ERROR: cannot build the C fast path for Lambda {OTHER_ARCH}" in run.stderr
    assert f"make sam-build ARCHITECTURE={OTHER_ARCH}" in run.stderr and "FASTSPLIT_PREBUILT" in run.stderr
    assert "3x slower" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_architecture_comes_from_the_environment_as_make_passes_it(tmp_path: Path) -> None:
    run = run_build("--lambda", "--out", str(tmp_path), ARCHITECTURE=OTHER_ARCH)
    assert run.returncode == 1 and f"for Lambda {OTHER_ARCH}" in run.stderr
    assert run_build("--lambda", "--arch", "sparc", "--out", str(tmp_path)).returncode == 2


def test_a_prebuilt_module_of_the_wrong_architecture_or_abi_is_refused(
    tmp_path: Path, host_module: Path
) -> None:
    # a version-specific build for OTHER_ARCH (its ELF machine, a CPython 3.13-only name): one
    # Python's module would fail to load on the next runtime, so only the stable ABI's is shipped
    data = bytearray(host_module.read_bytes())
    data[18:20] = build.ARCHITECTURES[OTHER_ARCH][1].to_bytes(2, "little")
    versioned = tmp_path / f"_fastsplit.cpython-313-{build.ARCHITECTURES[OTHER_ARCH][2]}.so"
    versioned.write_bytes(bytes(data))
    out = tmp_path / "out"
    for prebuilt, message in [
        (host_module, "ELF machine"),  # the right name (abi3), but this host's machine code
        (versioned, f"not a stable-ABI (abi3) module for {OTHER_ARCH}"),
        (tmp_path / "missing.so", "no such file"),
    ]:
        run = run_build("--lambda", "--arch", OTHER_ARCH, "--out", str(out), FASTSPLIT_PREBUILT=str(prebuilt))
        assert run.returncode == 1, prebuilt
        assert message in run.stderr
        assert not out.exists() or list(out.iterdir()) == []


def test_a_prebuilt_module_for_the_architecture_is_checked_and_shipped(
    tmp_path: Path, host_module: Path
) -> None:
    # a stand-in for a module built on an OTHER_ARCH host: this host's, with the ELF machine and the
    # name of OTHER_ARCH (the checks are structural; only that host can run it)
    data = bytearray(host_module.read_bytes())
    data[18:20] = build.ARCHITECTURES[OTHER_ARCH][1].to_bytes(2, "little")
    prebuilt = tmp_path / f"_fastsplit{build.lambda_suffix(OTHER_ARCH)}"
    prebuilt.write_bytes(bytes(data))
    out = tmp_path / "out"
    run = run_build("--lambda", "--arch", OTHER_ARCH, "--out", str(out), FASTSPLIT_PREBUILT=str(prebuilt))
    assert run.returncode == 0, run.stderr
    assert f"for Lambda {OTHER_ARCH}" in run.stdout
    assert (out / prebuilt.name).read_bytes() == bytes(data)


def test_compiling_that_fails_fails_the_layer_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("#include <Python.h>\nthis is not C;\n")
    monkeypatch.setattr(build, "SOURCE", broken)
    monkeypatch.delenv("FASTSPLIT_PREBUILT", raising=False)
    assert build.main(["--lambda", "--arch", HOST_ARCH, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "ERROR: compiling failed" in err and "the layer is not built" in err
    assert list((tmp_path / "out").glob("_fastsplit*")) == []


def test_a_module_needing_a_newer_glibc_than_lambdas_fails_the_layer_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build, "GLIBC_MAX", (2, 0))
    assert build.main(["--lambda", "--arch", HOST_ARCH, "--out", str(tmp_path)]) == 1
    assert "newer than manylinux2014's (2, 0)" in capsys.readouterr().err
    assert list(tmp_path.glob("_fastsplit*")) == []  # not left for the zip


def test_the_layer_makefile_builds_the_fast_path_and_checks_the_layer() -> None:
    makefile = (ROOT / "layers/core/Makefile").read_text()
    assert "native/build.py --lambda --arch $(ARCHITECTURE)" in makefile
    assert "check_layer.py" in makefile and "--require-hashes" in makefile
    # the runtime's CPython writes the bytecode and imports the layer: no build without it
    assert "--python-version $(LAMBDA_PYTHON_VERSION)" in makefile
    assert "is not CPython $(LAMBDA_PYTHON_VERSION)" in makefile and "no bytecode" not in makefile
    assert "-r requirements.lock" in makefile
    # a recipe line that ignores errors ("-" prefix, "|| true") would make the failure silent again
    assert not re.search(r"^\t-|\|\| *true", makefile, re.MULTILINE)


def imported_core_modules(path: Path, package: str) -> set[str]:
    """The ``verifyfeed`` modules and packages ``path`` imports (``package``: for relative imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "verifyfeed"}


def test_the_layer_holds_only_what_the_functions_import() -> None:
    """Every module of the layer's package is reached from a function's imports; the operators'
    CLI (``verifyfeed_cli``, outside the layer) is not, and nothing in the layer imports it."""
    core = ROOT / "layers/core/python"
    files = {
        ".".join(path.relative_to(core).with_suffix("").parts).removesuffix(".__init__"): path
        for path in core.rglob("*.py")
    }
    assert "verifyfeed.services" in files and not (core / "verifyfeed/cli").exists()
    assert not any("verifyfeed_cli" in path.read_text() for path in files.values())
    todo = [name for app in ROOT.glob("functions/*/app.py") for name in imported_core_modules(app, "")]
    reached: set[str] = set()
    while todo:
        parts = todo.pop().split(".")
        for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if prefix in files and prefix not in reached:
                reached.add(prefix)
                is_package = files[prefix].name == "__init__.py"
                package = prefix if is_package else prefix.rpartition(".")[0]
                todo += imported_core_modules(files[prefix], package)
    assert sorted(set(files) - reached) == []


# -- the layer check ---------------------------------------------------------------------------------


def fake_layer(root: Path, packages: list[tuple[str, str, str]], module: Path | None) -> Path:
    for where, name, version in packages:
        info = root / where / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (root / "python/verifyfeed").mkdir(parents=True, exist_ok=True)
    if module is not None:
        shutil.copyfile(module, root / "python/verifyfeed" / module.name)
    return root


SITE = str(check_layer.SITE)
LOCK = {"pydantic": "2.14.4", "pydantic-core": "2.50.5"}
OURS = [(SITE, "pydantic", "2.14.4"), (SITE, "pydantic-core", "2.50.5")]


def test_the_layer_check_passes_one_copy_of_each_locked_package_in_site_packages(
    tmp_path: Path, host_module: Path
) -> None:
    layer = fake_layer(
        tmp_path, [(SITE, "pydantic", "2.14.4"), (SITE, "pydantic_core", "2.50.5")], host_module
    )
    assert check_layer.problems(layer, LOCK, HOST_ARCH) == []


@pytest.mark.parametrize(
    ("packages", "problem"),
    [
        # a second pydantic where the Powertools layer keeps its own: one would shadow the other
        ([*OURS, ("python", "pydantic", "2.11.0")], "pydantic is installed 2 times (2.11.0, 2.14.4)"),
        ([(SITE, "pydantic", "2.14.3"), OURS[1]], "pydantic is 2.14.3, the lock says"),
        (OURS[:1], "pydantic-core 2.50.5 (locked) is not installed"),
        ([OURS[0], ("python", "pydantic-core", "2.50.5")], "pydantic-core 2.50.5 is in python,"),
        ([*OURS, (SITE, "rich", "14.0.0")], "rich 14.0.0 is not in the lock"),
    ],
)
def test_the_layer_check_refuses(
    tmp_path: Path, host_module: Path, packages: list[tuple[str, str, str]], problem: str
) -> None:
    layer = fake_layer(tmp_path, packages, host_module)
    found = check_layer.problems(layer, LOCK, HOST_ARCH)
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    "where", ["python/verifyfeed_cli", "python/verifyfeed/cli", f"{SITE}/verifyfeed_cli"]
)
def test_the_layer_check_refuses_a_layer_with_the_operators_cli(
    tmp_path: Path, host_module: Path, where: str
) -> None:
    layer = fake_layer(tmp_path, OURS, host_module)
    (layer / where).mkdir(parents=True)
    (layer / where / "__init__.py").write_text("")
    assert check_layer.problems(layer, LOCK, HOST_ARCH) == [f"the operators' CLI is in the layer: {where}"]


def test_the_layer_check_refuses_a_layer_without_the_fast_path_for_its_architecture(
    tmp_path: Path, host_module: Path
) -> None:
    packages = [(SITE, "pydantic", "2.14.4"), (SITE, "pydantic-core", "2.50.5")]
    without = fake_layer(tmp_path / "without", packages, None)
    assert check_layer.problems(without, LOCK, HOST_ARCH) == [
        f"no C fast path (verifyfeed/_fastsplit*.so) for {HOST_ARCH}"
    ]
    other = fake_layer(tmp_path / "other", packages, host_module)
    (found,) = check_layer.problems(other, LOCK, OTHER_ARCH)
    assert found.startswith("C fast path:") and f"not {OTHER_ARCH}'s" in found  # its ELF machine
    assert check_layer.main([str(other), "--lock", str(LAYER_LOCK), "--arch", HOST_ARCH]) == 1


def real_layer(root: Path, module: Path | None) -> Path:
    """A layer as the build makes it, but with this venv's packages as its site-packages."""
    shutil.copytree(
        ROOT / "layers/core/python/verifyfeed",
        root / "python/verifyfeed",
        ignore=shutil.ignore_patterns("__pycache__", "_fastsplit*.so"),
    )
    (root / SITE).parent.mkdir(parents=True)
    (root / SITE).symlink_to(sysconfig.get_paths()["purelib"], target_is_directory=True)
    if module is not None:
        shutil.copyfile(module, root / "python/verifyfeed" / module.name)
    return root


def test_the_layer_check_imports_the_layer_alone_and_the_two_paths_agree(
    tmp_path: Path, host_module: Path
) -> None:
    layer = real_layer(tmp_path, host_module)
    found, summary = check_layer.import_problems(layer, HOST_ARCH, check_layer.RUNTIME_PYTHON)
    assert found == []
    assert f"imported alone by CPython {platform.python_version()}" in summary
    assert "the C fast path (_fastsplit.abi3.so) and the pure-Python path agree" in summary


def test_the_layer_check_refuses_a_layer_that_does_not_import_with_its_fast_path(tmp_path: Path) -> None:
    layer = real_layer(tmp_path, None)  # the dev tree's module is not on the path: only the layer is
    (found,) = check_layer.import_problems(layer, HOST_ARCH, check_layer.RUNTIME_PYTHON)[0]
    assert found.startswith(f"the layer does not import on Python {check_layer.RUNTIME_PYTHON}")
    assert "_fastsplit" in found


def test_the_layer_check_needs_the_runtimes_python(tmp_path: Path, host_module: Path) -> None:
    layer = real_layer(tmp_path, host_module)
    (found,) = check_layer.import_problems(layer, HOST_ARCH, "3.12")[0]
    here = check_layer.RUNTIME_PYTHON
    assert found == f"cannot import the layer as Lambda's python3.12: this is Python {here}"


# -- the locks --------------------------------------------------------------------------------------


def requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += requirements(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def hashed_pins(lock: Path) -> dict[str, str]:
    text = lock.read_text()
    pins = check_layer.locked(lock)
    # every pin carries its hashes (pip installs with --require-hashes)
    assert len(re.findall(r"^[A-Za-z0-9][^\s]*==", text, re.MULTILINE)) == len(pins)
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if "==" in block.split("\n", 1)[0]:
            assert "--hash=sha256:" in block, block.split("\n", 1)[0]
    return pins


@pytest.mark.parametrize(
    ("lock", "sources"),
    [
        (DEV_LOCK, [ROOT / "requirements-dev.txt"]),
        (LAYER_LOCK, [ROOT / "layers/core/requirements.txt"]),
    ],
    ids=["dev", "layer"],
)
def test_the_lock_pins_every_requirement_at_a_version_it_allows(lock: Path, sources: list[Path]) -> None:
    pins = hashed_pins(lock)
    for source in sources:
        for requirement in requirements(source):
            name = check_layer.normalise(requirement.name)
            assert name in pins, f"{requirement} is not in {lock.name}: run `make lock`"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock.name} has {name}=={pins[name]}, {source.name} wants {requirement}: run `make lock`"
            )


def test_the_layer_ships_the_versions_the_tests_run_with() -> None:
    dev, layer = hashed_pins(DEV_LOCK), hashed_pins(LAYER_LOCK)
    assert {"pydantic", "pydantic-core", "boto3", "botocore"} <= set(layer)
    assert {name: dev.get(name) for name in layer} == layer
    # and this venv is installed from the dev lock
    from importlib.metadata import version

    for name in ("pydantic", "pydantic-core", "boto3", "botocore", "requests", "openpyxl"):
        assert version(name) == dev[name], f"the venv's {name} is not the lock's: make venv"


def test_make_bench_says_which_splitter_path_ran_and_on_which_architecture() -> None:
    from bench.run import machine

    info = machine()
    # `make bench` builds the extension (make native), as `make test` does: the layer's build of it
    assert info["fast_path"].startswith("the C fast path (verifyfeed._fastsplit: ")
    assert "_fastsplit.abi3.so, CPython's stable ABI for 3.11 and later" in info["fast_path"]
    assert info["python"] == platform.python_version()
    assert info["architecture"] == f"{platform.machine()} (Lambda {HOST_ARCH})"
