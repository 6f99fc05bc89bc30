"""``python -m bench`` (``make bench``): the splitter core against the physical limit and the
pandas peer, then the per-message costs of the uploader and the callback. See
``docs/performance.md`` for what each figure means and the goals.

Options: ``--rows 100000,1000000`` (file sizes; the last one is the one the final ratios are
for), ``--repeat 3`` (runs per contender and file, each in a fresh interpreter, interleaved;
the fastest run counts, peak RSS is the largest seen), ``--e2e-repeat 3`` (runs of the splitter
end to end on the local stack, on the last file; the first one also samples ``--upload-events
20`` uploader invocations and splits ``--audit-rows 1000`` carrier audits, and prices the file:
``bench.split_e2e``, ``bench.cost``; one more run with every AWS answer held ``--aws-latency-ms 10``,
0 for none), ``--batches 30``, ``--callbacks 500``, ``--cold-runs 7``,
``--no-services`` (splitter core only), ``--json PATH`` (every figure, raw).

Rates come from the CPU time (user + sys) of each child's timed section: the contenders are
single-threaded, so on an idle machine it equals the wall time, and on a shared one it is not
inflated by other processes' turns. Wall times are printed next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cost import file_cost, print_cost
from bench.generate import Planted, write_repair_csv, write_repair_ods, write_repair_xlsx

CONTENDERS = ("limit", "peer", "ours", "ours-py")
ROOT = Path(__file__).resolve().parent.parent

GOAL_VS_PEER = 2.0
GOAL_VS_LIMIT = 0.35
GOAL_RSS_MB = 300.0
GOAL_SCALING = 11.0
GOAL_UPLOADER_MS = 20.0
GOAL_COLD_IMPORT_MS = 300.0
GOAL_WARM_P99_MS = 15.0
GOAL_E2E_VS_CORE = 0.5


def architecture() -> str:
    """This machine's architecture, with the Lambda name (the template's Architecture) of it."""
    machine = platform.machine()
    lambda_name = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    return f"{machine} (Lambda {lambda_name})" if lambda_name else f"{machine} (no Lambda architecture)"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        import pandas

        pandas_version = pandas.__version__
    except ImportError:
        pandas_version = "not installed"
    try:
        from verifyfeed import _fastsplit

        # which build ran: the layer's is the stable-ABI one (LIMITED_API 0x030B0000: 3.11 and later)
        limited = _fastsplit.LIMITED_API
        build = (
            f"CPython's stable ABI for {limited >> 24}.{(limited >> 16) & 0xFF} and later"
            if limited
            else f"for CPython {platform.python_version()} only"
        )
        fast_path = (
            f"the C fast path (verifyfeed._fastsplit: {Path(_fastsplit.__file__).name}, {build}), SHA-256 by "
            + ("the CPU's SHA extensions" if _fastsplit.SHA_NI else "portable C")
        )
    except ImportError:
        fast_path = "the pure-Python path (the C extension is NOT BUILT: make native)"
    return {
        "fast_path": fast_path,
        "architecture": architecture(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "pandas": pandas_version,
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
    }


def run_child(args: list[str], out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers/core/python"), str(ROOT)])}
    # the children's stdout is the functions' logs and metrics: not part of the report
    subprocess.run(
        [sys.executable, *args, str(out)], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def bench_file(path: Path, planted: Planted, repeat: int, work: Path) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for name in CONTENDERS:
            run = run_child(["-m", "bench.contenders", name, str(path)], work / f"{name}.json")
            if run["rows"] != planted.rows:
                raise SystemExit(f"{name} read {run['rows']} rows, the file has {planted.rows}")
            if name.startswith("ours") and run["accepted"] != planted.valid:
                raise SystemExit(f"{name} accepted {run['accepted']} rows, {planted.valid} are valid")
            kept = best.get(name)
            if kept is None or run["cpu_seconds"] < kept["cpu_seconds"]:
                run["peak_rss_mb"] = max(run["peak_rss_mb"], kept["peak_rss_mb"] if kept else 0.0)
                best[name] = run
            else:
                kept["peak_rss_mb"] = max(kept["peak_rss_mb"], run["peak_rss_mb"])
    for run in best.values():
        run["rows_per_s"] = run["rows"] / run["cpu_seconds"]
        run["wall_rows_per_s"] = run["rows"] / run["seconds"]
    return best


# the same rows as a workbook: how each format is written, and its contenders (bench.contenders)
WORKBOOK_FORMATS: dict[str, tuple[Callable[[Path, Path], None], tuple[str, str]]] = {
    "xlsx": (write_repair_xlsx, ("calamine-read", "ours-xlsx")),
    "ods": (write_repair_ods, ("calamine-read", "ours-ods")),
}


def bench_workbook(
    csv_path: Path,
    planted: Planted,
    repeat: int,
    work: Path,
    csv_results: dict[str, dict[str, Any]],
    fmt: str = "xlsx",
) -> dict[str, Any]:
    """The same rows as a workbook of ``fmt`` (.xlsx, .ods): python-calamine alone, and the
    splitter's core on it; ``ratio_<fmt>_csv`` and ``ratio_<fmt>_calamine`` against them."""
    write, names = WORKBOOK_FORMATS[fmt]
    path = csv_path.with_suffix(f".{fmt}")
    write(csv_path, path)
    ours_name = names[1]
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for name in names:
            run = run_child(["-m", "bench.contenders", name, str(path)], work / f"{name}.json")
            if run["rows"] != planted.rows:
                raise SystemExit(f"{name} read {run['rows']} rows, the .{fmt} has {planted.rows}")
            if name == ours_name and run["accepted"] != planted.valid:
                raise SystemExit(f"{name} accepted {run['accepted']} rows, {planted.valid} are valid")
            kept = best.get(name)
            peak = max(run["peak_rss_mb"], kept["peak_rss_mb"] if kept else 0.0)
            if kept is None or run["cpu_seconds"] < kept["cpu_seconds"]:
                best[name] = run
            best[name]["peak_rss_mb"] = peak
    for run in best.values():
        run["rows_per_s"] = run["rows"] / run["cpu_seconds"]
        run["wall_rows_per_s"] = run["rows"] / run["seconds"]
    ours, floor, csv_ours = best[ours_name], best["calamine-read"], csv_results["ours"]
    print(f"  same rows as .{fmt} ({path.stat().st_size / 1e6:.1f} MB):")
    for name in names:
        r = best[name]
        print(
            f"  {name:13} {r['rows_per_s']:>10,.0f} {r['cpu_seconds']:>7.2f} {r['seconds']:>7.2f} "
            f"{r['wall_rows_per_s']:>12,.0f} {r['peak_rss_mb']:>6.0f} MB"
        )
    result = {
        "mb": path.stat().st_size / 1e6,
        "runs": best,
        f"ratio_{fmt}_csv": ours["rows_per_s"] / csv_ours["rows_per_s"],
        f"ratio_{fmt}_calamine": ours["rows_per_s"] / floor["rows_per_s"],
    }
    print(
        f"  {fmt}/csv {result[f'ratio_{fmt}_csv']:.2f}   "
        f"{fmt}/calamine-read {result[f'ratio_{fmt}_calamine']:.2f}"
    )
    path.unlink()
    return result


def _phases(split: dict[str, Any]) -> str:
    """A split's wall time, when its last staging write ended and how long its release took."""
    staged = split["span_s"].get("s3.PutObject", [0, 0])[1]
    release = split["span_s"].get("sqs.SendMessageBatch", [0, 0])
    return (
        f"wall {split['wall_s']:.2f} s (staging done at {staged:.2f} s, "
        f"release {release[1] - release[0]:.2f} s)"
    )


def bench_e2e(path: Path, planted: Planted, core: dict[str, Any], args: Any, work: Path) -> dict[str, Any]:
    """The splitter end to end on the local stack against its core on the same file: wall rows/s
    of the handler's invocation (the file in moto's S3, batches staged and released) over the
    core's rows/s above (by CPU time: the core is single-threaded, so that is its wall rate on an
    idle machine, and not the turns other processes took from it)."""
    print(
        f"\n  the splitter end to end on the local stack (moto in its own process), {args.e2e_repeat} runs; "
        f"the first also uploads {args.upload_events} SQS batches and splits {args.audit_rows} carrier audits"
    )
    runs: list[dict[str, Any]] = []
    for n in range(args.e2e_repeat):
        numbers = [str(args.audit_rows if n == 0 else 0), str(args.upload_events if n == 0 else 0)]
        run = run_child(["-m", "bench.split_e2e", str(path), *numbers], work / "e2e.json")
        split = run["split"]
        if split["rows_read"] != planted.rows or split["rows_accepted"] != planted.valid:
            raise SystemExit(
                f"the splitter read {split['rows_read']} rows, accepted {split['rows_accepted']}"
            )
        split["rows_per_s"] = split["rows_read"] / split["wall_s"]
        runs.append(run)
        print(
            f"  split-e2e run {n + 1}: {split['rows_per_s']:>9,.0f} rows/s, {_phases(split)}, "
            f"cpu {split['cpu_s']:.2f} s, "
            f"moto cpu {split['moto_cpu_s']:.2f} s; "
            + ", ".join(f"{k} {v}" for k, v in split["calls"].items())
        )
    best = max(runs, key=lambda r: r["split"]["rows_per_s"])["split"]
    rates = [r["split"]["rows_per_s"] for r in runs]
    ratio = best["rows_per_s"] / core["rows_per_s"]
    print(
        f"  split-e2e best {best['rows_per_s']:,.0f} rows/s (runs {min(rates):,.0f}–{max(rates):,.0f}); "
        f"core (ours) {core['rows_per_s']:,.0f} rows/s: ratio {ratio:.2f}"
    )
    latency: dict[str, Any] | None = None
    if args.aws_latency_ms > 0:
        numbers = ["0", "0", str(args.aws_latency_ms)]
        latency = run_child(["-m", "bench.split_e2e", str(path), *numbers], work / "e2e.json")["split"]
        latency["rows_per_s"] = latency["rows_read"] / latency["wall_s"]
        latency["ratio"] = latency["rows_per_s"] / core["rows_per_s"]
        print(
            f"  split-e2e with every AWS answer held {args.aws_latency_ms:.0f} ms (a model of in-region "
            f"round trips): {latency['rows_per_s']:,.0f} rows/s, {_phases(latency)}, "
            f"ratio to core {latency['ratio']:.2f}"
        )
    first = runs[0]
    upload = first["upload"]
    if upload["invocations"]:
        per = sum(upload["invocation_s"]) / upload["batches"] * 1000
        calls = ", ".join(f"{k} {v / upload['batches']:.1f}" for k, v in upload["calls"].items())
        print(
            f"  uploader handler: {upload['invocations']} invocations of {upload['batch_size']} batches, "
            f"{per:.0f} ms per batch (mean); per batch: {calls}"
        )
    audits = first["audits"]
    if audits:
        audits["rows_per_s"] = audits["rows_read"] / audits["wall_s"]
        print(
            f"  carrier-audit intake: {audits['rows_read']:,} audits in {audits['wall_s']:.2f} s, "
            f"{audits['rows_per_s']:,.0f} rows/s; "
            + ", ".join(f"{k} {v}" for k, v in audits["calls"].items())
        )
    cost = file_cost(first)
    print_cost(cost)
    return {
        "runs": runs,
        "best_rows_per_s": best["rows_per_s"],
        "core_rows_per_s": core["rows_per_s"],
        "ratio": ratio,
        "with_latency": latency,
        "cost": cost,
    }


def label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--callbacks", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--e2e-repeat", type=int, default=3)
    parser.add_argument("--upload-events", type=int, default=20)
    parser.add_argument("--audit-rows", type=int, default=1000)
    parser.add_argument("--aws-latency-ms", type=float, default=10.0)
    parser.add_argument("--no-services", action="store_true")
    parser.add_argument("--no-workbooks", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",")]
    started = time.perf_counter()
    info = machine()
    report: dict[str, Any] = {"machine": info, "files": {}, "splitter": {}, "workbooks": {}, "ods": {}}
    print(f"machine: {info['nproc']} × {info['cpu']}, Python {info['python']}, pandas {info['pandas']}")
    print(f"splitter: ours runs {info['fast_path']}; ours-py the pure-Python path")
    print(f"architecture: {info['architecture']}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in info['loadavg'])}")

    with tempfile.TemporaryDirectory(prefix="verifyfeed-bench-") as tmp:
        work = Path(tmp)
        for rows in sizes:
            path = work / f"lost-repair-{label(rows)}.csv"
            planted = write_repair_csv(path, rows)
            size_mb = path.stat().st_size / 1e6
            report["files"][label(rows)] = {
                "rows": rows,
                "mb": size_mb,
                "invalid": planted.invalid,
                "duplicates": planted.duplicates,
            }
            print(
                f"\n{label(rows)} rows ({size_mb:.1f} MB, {planted.invalid} invalid, "
                f"{planted.duplicates} duplicates); best of {args.repeat}, each in a fresh interpreter"
            )
            results = bench_file(path, planted, args.repeat, work)
            report["splitter"][label(rows)] = results
            print(f"  {'':7} {'rows/s':>10} {'cpu s':>7} {'wall s':>7} {'wall rows/s':>12} {'peak RSS':>9}")
            for name in CONTENDERS:
                r = results[name]
                print(
                    f"  {name:7} {r['rows_per_s']:>10,.0f} {r['cpu_seconds']:>7.2f} {r['seconds']:>7.2f} "
                    f"{r['wall_rows_per_s']:>12,.0f} {r['peak_rss_mb']:>6.0f} MB"
                )
            ours = results["ours"]["rows_per_s"]
            print(
                f"  ours/peer {ours / results['peer']['rows_per_s']:.2f}   "
                f"ours/limit {ours / results['limit']['rows_per_s']:.2f}   "
                f"(ours ran the {results['ours']['path']} on {platform.machine()})"
            )
            if not args.no_workbooks:
                report["workbooks"][label(rows)] = bench_workbook(path, planted, args.repeat, work, results)
                report["ods"][label(rows)] = bench_workbook(path, planted, args.repeat, work, results, "ods")
            if rows == sizes[-1] and not args.no_services and args.e2e_repeat > 0:
                report["e2e"] = bench_e2e(path, planted, results["ours"], args, work)
            path.unlink()

        if not args.no_services:
            print("\nuploader and callback against moto and the upstream sandbox (each its own process)")
            services = run_child(
                [
                    "-m",
                    "bench.services",
                    str(args.batches),
                    str(args.callbacks),
                    str(args.cold_runs),
                ],
                work / "services.json",
            )
            report["services"] = services

    summary = summarise(report, sizes)
    report["summary"] = summary
    report["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {report['seconds']:.0f} s; load average at end: {load}")
    big = label(sizes[-1])
    print(f"ratio ours/peer: {summary['ratio_ours_peer'][big]:.2f}")
    print(f"ratio ours/limit: {summary['ratio_ours_limit'][big]:.2f}")
    if big in report["workbooks"]:
        book = report["workbooks"][big]
        print(f"ratio xlsx/csv: {book['ratio_xlsx_csv']:.2f}")
        print(f"ratio xlsx/calamine-read: {book['ratio_xlsx_calamine']:.2f}")
    if big in report["ods"]:
        ods = report["ods"][big]
        print(f"same rows as .ods: {ods['runs']['ours-ods']['rows_per_s']:,.0f} rows/s")
        print(f"ratio ods/csv: {ods['ratio_ods_csv']:.2f}")
    if "e2e" in report:
        print(f"ratio split-e2e/core: {report['e2e']['ratio']:.2f}")
        audits = report["e2e"]["runs"][0]["audits"]
        if audits:
            print(f"carrier-audit intake on the local stack: {audits['rows_per_s']:,.0f} rows/s")
    return 0


def summarise(report: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    splitter = report["splitter"]
    labels = [label(n) for n in sizes]
    big = labels[-1]
    summary: dict[str, Any] = {
        "ratio_ours_peer": {
            k: splitter[k]["ours"]["rows_per_s"] / splitter[k]["peer"]["rows_per_s"] for k in labels
        },
        "ratio_ours_limit": {
            k: splitter[k]["ours"]["rows_per_s"] / splitter[k]["limit"]["rows_per_s"] for k in labels
        },
    }
    goals: list[tuple[str, bool, str]] = []
    vs_peer = summary["ratio_ours_peer"][big]
    vs_limit = summary["ratio_ours_limit"][big]
    rss = splitter[big]["ours"]["peak_rss_mb"]
    goals.append((f"ours ≥ {GOAL_VS_PEER}× peer ({big})", vs_peer >= GOAL_VS_PEER, f"{vs_peer:.2f}×"))
    goals.append(
        (f"ours ≥ {GOAL_VS_LIMIT:.0%} of limit ({big})", vs_limit >= GOAL_VS_LIMIT, f"{vs_limit:.0%}")
    )
    goals.append((f"ours peak RSS < {GOAL_RSS_MB:.0f} MB ({big})", rss < GOAL_RSS_MB, f"{rss:.0f} MB"))
    if len(labels) > 1:
        small = labels[0]
        scaling = {
            name: splitter[big][name]["cpu_seconds"] / splitter[small][name]["cpu_seconds"]
            for name in CONTENDERS
        }
        summary["scaling"] = scaling
        print(f"\nscaling, {big}/{small} time: " + ", ".join(f"{n} {s:.1f}" for n, s in scaling.items()))
        goals.append(
            (
                f"ours {big}/{small} time ≤ {GOAL_SCALING:.0f}",
                scaling["ours"] <= GOAL_SCALING,
                f"{scaling['ours']:.1f}",
            )
        )
    e2e = report.get("e2e")
    if e2e:
        goals.append(
            (
                f"split-e2e ≥ {GOAL_E2E_VS_CORE} × core ({big}, local stack)",
                e2e["ratio"] >= GOAL_E2E_VS_CORE,
                f"{e2e['ratio']:.2f} ({e2e['best_rows_per_s']:,.0f} rows/s)",
            )
        )
    services = report.get("services")
    if services:
        up = services["uploader"]
        print(
            f"uploader, per {up['records_per_batch']}-record batch (median of {up['batches']}): "
            f"{up['total_ms_p50']:.1f} ms = upstream HTTP {up['upstream_http_ms_p50']:.1f} "
            f"+ DynamoDB on moto {up['aws_calls_ms_p50']:.1f} ({up['aws_calls_per_batch']:.0f} calls) "
            f"+ our code {up['ours_ms_p50']:.1f}; "
            f"overhead without the upstream {up['overhead_ms_p50']:.1f} ms"
        )
        cb = services["callback"]
        print(
            f"callback warm ({cb['invocations']} invocations): "
            f"p50 {cb['p50_ms']:.1f} ms, p99 {cb['p99_ms']:.1f} ms "
            f"(DynamoDB on moto p50 {cb['aws_calls_ms_p50']:.1f}; our code p50 {cb['ours_ms_p50']:.1f}, "
            f"p99 {cb['ours_ms_p99']:.1f})"
        )
        for mode, cold in services["callback_cold"].items():
            print(
                f"callback cold, {mode}: import {cold['import_ms_median']:.0f} ms "
                f"(min {cold['import_ms_min']:.0f}, cpu {cold['import_cpu_ms_median']:.0f}), "
                f"first invocation {cold['first_invocation_ms_median']:.0f} ms; the libraries alone "
                f"{cold['libraries_floor_ms_median']:.0f} ms — medians of {cold['runs']}"
            )
        goals.append(
            (
                f"uploader our code < {GOAL_UPLOADER_MS:.0f} ms per batch",
                up["ours_ms_p50"] < GOAL_UPLOADER_MS,
                f"{up['ours_ms_p50']:.1f} ms (with DynamoDB on moto {up['overhead_ms_p50']:.1f} ms)",
            )
        )
        lambda_cold = services["callback_cold"]["lambda"]["import_ms_median"]
        goals.append(
            (
                f"callback cold import < {GOAL_COLD_IMPORT_MS:.0f} ms (as in Lambda)",
                lambda_cold < GOAL_COLD_IMPORT_MS,
                f"{lambda_cold:.0f} ms",
            )
        )
        goals.append(
            (
                f"callback warm p99 < {GOAL_WARM_P99_MS:.0f} ms",
                cb["p99_ms"] < GOAL_WARM_P99_MS,
                f"{cb['p99_ms']:.1f} ms (our code {cb['ours_ms_p99']:.1f} ms)",
            )
        )
    summary["goals"] = [{"goal": g, "met": ok, "figure": figure} for g, ok, figure in goals]
    print("\ngoals")
    for goal, ok, figure in goals:
        print(f"  {verdict(ok):6} {goal}: {figure}")
    return summary
