"""``make demo``: run the whole system locally on the sample files (or ``FILE``) and report.

``main`` reads the options from the environment (``DemoOptions.from_env``; README.md's ``make demo``
section lists them), ``run`` uploads the files to a ``LocalRunner``, waits for every job to settle
and prints a table, or one JSON object with ``JSON=1``. Exit code 0 when every job settled and every
row is accounted for, else 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from local.runner import ROOT, RunnerOptions, iter_input_files, reports_prefix_of, shown
from local.snapshot import JobView, Snapshot
from verifyfeed_cli.output import table

STATE_DIR = ROOT / ".local-state"
LOG_FILE = STATE_DIR / "demo.log"
REPORTS_DIR = STATE_DIR / "reports"
# resource names come from the stack and the endpoint from the runner, never from the caller's shell
_NOT_PASSED_ON = frozenset(
    {
        "INGEST_BUCKET",
        "JOBS_TABLE",
        "AUDITS_TABLE",
        "IDEMPOTENCY_TABLE",
        "WORK_QUEUE_URL",
        "UPSTREAM_CREDENTIALS_PARAM",
        "CALLBACK_SECRET_PARAM",
        "UPSTREAM_BASE_URL",
        "UPSTREAM_API_ID",
        "UPSTREAM_API_KEY",
        "CALLBACK_SECRET",
        "CALLBACK_PREVIOUS_SECRET",
        "IDENTITY_PEPPER_PARAM",
        "IDENTITY_PEPPER",
        "IDENTITY_PREVIOUS_PEPPER",
        "CLOCK_NOW",
    }
)


@dataclass(frozen=True)
class DemoOptions:
    runner: RunnerOptions
    file: str
    kind: str
    timeout_s: float
    as_json: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DemoOptions:
        def get(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        kind = get("KIND")
        if kind and kind not in ("lost-repair", "carrier-audit"):
            raise ValueError(f"KIND must be lost-repair or carrier-audit, not {kind!r}")
        if get("UPSTREAM_URL"):  # the functions' settings would refuse it at start: say so first
            from verifyfeed.config import upstream_url

            upstream_url(get("UPSTREAM_URL"))
        runner = RunnerOptions(
            upstream_url=get("UPSTREAM_URL"),
            clock_now=get("CLOCK_NOW"),
            callback_port=int(get("CALLBACK_PORT", "8787")),
            callback_secret=get("CALLBACK_SECRET", "local-callback-secret"),
            identity_pepper=get("IDENTITY_PEPPER", "local-identity-pepper"),
            api_id=get("API_ID", "local-api-id"),
            api_key=get("API_KEY", "local-api-key"),
            poll_seconds=float(get("POLL_SECONDS", "3")),
            env_overrides=settings_from(env),
            template_path=Path(get("TEMPLATE", str(ROOT / "template.yaml"))).resolve(),
        )
        return cls(
            runner=runner,
            file=get("FILE"),
            kind=kind,
            timeout_s=float(get("DEMO_TIMEOUT", "120")),
            as_json=get("JSON") in ("1", "true", "yes"),
        )


def settings_from(env: Mapping[str, str]) -> dict[str, str]:
    """The core's knobs the caller set (e.g. ``BATCH_MAX_RECORDS=5 make demo``), passed on to the
    functions."""
    from verifyfeed.config import Settings

    names = {f.alias for f in Settings.model_fields.values() if f.alias} - _NOT_PASSED_ON
    return {name: env[name] for name in sorted(names) if env.get(name, "").strip()}


# ---- output ------------------------------------------------------------------------------------


def redirect_stdout(log_path: Path) -> IO[str]:
    """Send everything written to fd 1 (handler logs, EMF metrics) to ``log_path``.

    Returns a stream on the original stdout, for the summary alone.
    """
    sys.stdout.flush()
    summary = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    log_file = log_path.open("a", encoding="utf-8")
    os.dup2(log_file.fileno(), 1)
    log_file.close()
    return summary


def configure_logging(log_path: Path) -> None:
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    for noisy in ("werkzeug", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def header_facts(snap: Snapshot, reports: list[tuple[str, Path]]) -> dict[str, dict[str, Any]]:
    """Each job's header facts (``<job's report>.header.json``, downloaded), by S3 key."""
    return _downloaded(snap, reports, "header")


def summaries(snap: Snapshot, reports: list[tuple[str, Path]]) -> dict[str, dict[str, Any]]:
    """Each job's summary report (``<job's report>.json``, downloaded), by S3 key."""
    return _downloaded(snap, reports, "summary")


def _downloaded(snap: Snapshot, reports: list[tuple[str, Path]], which: str) -> dict[str, dict[str, Any]]:
    downloaded = {path for _, path in reports}
    prefix = reports_prefix_of()
    found: dict[str, dict[str, Any]] = {}
    for job in snap.jobs:
        key: str = getattr(job.report_paths(prefix), which)
        path = REPORTS_DIR / key.removeprefix(prefix)
        if path in downloaded:
            found[job.key] = json.loads(path.read_text(encoding="utf-8"))
    return found


def refusal(job: JobView, summary: Mapping[str, Any] | None) -> dict[str, str | None] | None:
    """Why a file was refused as a whole, as its report gives it — its code, the customer's Chinese
    text, the English one — or ``None`` for a job that was not refused. Without its report (not
    written, not downloaded) the job's own English reason, the code and Chinese text unknown."""
    if job.status != "rejected":
        return None
    if summary is None or not summary.get("reason_code"):
        return {"code": None, "zh": None, "en": job.reason or None}
    return {"code": summary["reason_code"], "zh": summary.get("reason_zh"), "en": summary.get("reason")}


def result_json(
    snap: Snapshot,
    problems: list[str],
    reports: list[tuple[str, Path]],
    iam: dict[str, list[dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """Per job its counts, ``ignored_columns`` by label (``None`` when the header was never read: a file
    rejected before it), the ``notes`` (a title row, a summary row skipped) and ``reason`` (``refusal``);
    then the whole stack's snapshot."""
    facts = header_facts(snap, reports)
    reported = summaries(snap, reports)
    return {
        "jobs": [
            {
                **job.summary(),
                "reason": refusal(job, reported.get(job.key)),
                "ignored_columns": facts.get(job.key, {}).get("ignored_columns"),
                "notes": facts.get(job.key, {}).get("notes", []),
            }
            for job in snap.jobs
        ],
        "audits": snap.audits,
        "ledger": snap.ledger,
        "queues": snap.queues,
        "invocations": snap.invocations,
        "iam": iam,
        "reports": [{"s3": uri, "local": shown(path)} for uri, path in reports],
        "settled": not problems,
        "problems": problems,
    }


def result_table(
    snap: Snapshot,
    problems: list[str],
    reports: list[tuple[str, Path]],
    elapsed_s: float,
    iam: dict[str, list[dict[str, str]]] | None = None,
) -> str:
    """A line per job, under it which columns of its file were not used (by label) and what else the
    splitter noted (a title row, a summary row skipped); then the whole stack's snapshot."""
    header = ("FILE", "KIND", "STATUS", "ROWS read/ok/rejected", "BATCHES total/ok/failed/deferred/unknown")
    rows = [
        (
            job.file,
            job.kind,
            job.status,
            f"{c.rows_read}/{c.rows_accepted}/{c.rows_rejected}",
            f"{c.batches_total}/{c.batches_succeeded}/{c.batches_failed}/{c.batches_deferred}/{c.batches_unknown}",
        )
        for job in snap.jobs
        for c in (job.counts,)
    ]
    # the CLI's table: a CJK file name takes two columns a character
    lines = [f"verifyfeed local demo: {len(snap.jobs)} file(s), {elapsed_s:.1f} s", "", table(header, rows)]
    facts = header_facts(snap, reports)
    for job in snap.jobs:
        if job.reason:
            lines.append(f"  {job.file}: {job.reason}")
        ignored = facts.get(job.key, {}).get("ignored_columns")
        if ignored:
            lines.append(f"  {job.file}: ignored columns: {', '.join(ignored)}")
        lines += [f"  {job.file}: {note}" for note in facts.get(job.key, {}).get("notes", [])]
    lines.append("")
    order = ("submitting", "pending", "passed", "rejected", "failed", "unknown")
    listed = [s for s in order if s in snap.audits] + [s for s in snap.audits if s not in order]
    lines.append("Audits:   " + ", ".join(f"{snap.audits[s]} {s}" for s in listed))
    ledger = snap.ledger
    if ledger is None:
        lines.append("Ledger:   not available (UPSTREAM_URL is not the built-in sandbox)")
    else:
        verdict = "match" if ledger["match"] else "MISMATCH"
        twice = ledger["idcodes_received_twice"]
        lines.append(
            f"Ledger:   the sandbox accepted {ledger['sandbox_accepted_records']} lost-repair records;"
            f" we accepted {ledger['rows_accepted']} rows,"
            f" {ledger['records_in_succeeded_batches']} in succeeded batches "
            f"({verdict}); "
            + ("no idcode received twice" if not twice else f"{twice} idcode(s) RECEIVED TWICE")
        )
    lines.append(
        f"Queues:   {snap.queues.get('work', 0)} message(s) left in the work queue,"
        f" {snap.queues.get('dlq', 0)} in the DLQ"
    )
    calls = ", ".join(
        f"{role} {s['invocations']}"
        + (f" ({s['errors'] + s['timeouts']} failed)" if s["errors"] + s["timeouts"] else "")
        for role, s in snap.invocations.items()
    )
    lines.append(f"Invoked:  {calls}")
    if iam is not None:
        seen = sorted({c["function"] for c in iam["calls"]})
        lines.append(
            f"IAM:      each function ran as its own role (template expanded as SAM does):"
            f" {len(iam['calls'])} distinct calls allowed, {len(iam['denials'])} denied"
            + (f" ({', '.join(seen)})" if seen else "")
        )
    if reports:
        lines.append("Reports:")
        lines += [f"  {uri}\n    -> {shown(path)}" for uri, path in reports]
    lines.append(f"Logs:     {shown(LOG_FILE)}")
    if problems:
        lines += ["", "NOT SETTLED:"] + [f"  - {p}" for p in problems]
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    STATE_DIR.mkdir(exist_ok=True)
    LOG_FILE.write_text("", encoding="utf-8")
    out = redirect_stdout(LOG_FILE)
    configure_logging(LOG_FILE)
    try:
        options = DemoOptions.from_env(os.environ)
    except ValueError as exc:
        say(f"demo: {exc}")
        return _fail(out, False, str(exc))
    return run(options, out)


def run(options: DemoOptions, out: IO[str]) -> int:
    from local.runner import LocalRunner, detect_kind

    files = list(iter_input_files(options.file))
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        reason = f"no such file: {', '.join(missing)}" if missing else "no input files"
        say(f"demo: {reason}")
        return _fail(out, options.as_json, reason)

    from verifyfeed.ingest.errors import FileRejected

    kinds: dict[Path, str] = {}
    refused: list[str] = []
    for path in files:
        try:
            kinds[path] = detect_kind(path, options.kind)
        except FileRejected as exc:  # refused before anything is uploaded, as `verifyfeed drop` does
            hint = "; set KIND" if exc.code == "header.kind_unknown" else ""
            refused.append(f"{path}: {exc.reason} ({exc.code}){hint}")
    if refused:
        reason = "; ".join(refused)
        say(f"demo: {reason}")
        return _fail(out, options.as_json, reason)

    started = time.monotonic()
    runner = LocalRunner(options.runner)
    try:
        say("demo: starting moto, the sandbox and the functions ...")
        runner.start()
        say(f"demo: upstream {runner.upstream_url}, callbacks {runner.callback_url}, logs {shown(LOG_FILE)}")
        for path, kind in kinds.items():
            key = runner.submit_file(path, kind)
            say(f"demo: uploaded {path.name} as {kind} (s3 key {key})")

        last: list[str] = []

        def progress(snap: Snapshot) -> None:
            nonlocal last
            problems = snap.problems()
            if problems != last:
                say("demo: waiting: " + "; ".join(problems))
                last = problems

        snap = runner.wait_until_settled(options.timeout_s, progress)
        problems = snap.problems()
        iam = runner.iam_report()
        if snap.iam_denials:  # a call the template's roles do not allow: AWS would refuse it too
            problems.insert(0, "stopped: a function's role does not allow a call it makes (template.yaml)")
        elif problems:
            problems.insert(0, f"not settled after {options.timeout_s:g} s")
        reports = runner.download_reports(snap.jobs, REPORTS_DIR)
    except KeyboardInterrupt:
        say("demo: interrupted")
        return 130
    except Exception as exc:
        logging.getLogger("local.demo").exception("demo failed")
        say(f"demo: failed: {type(exc).__name__}: {exc} (see {shown(LOG_FILE)})")
        return _fail(out, options.as_json, f"{type(exc).__name__}: {exc}")
    finally:
        say("demo: stopping ...")
        runner.stop()

    if options.as_json:
        out.write(json.dumps(result_json(snap, problems, reports, iam), ensure_ascii=False) + "\n")
    else:
        out.write(result_table(snap, problems, reports, time.monotonic() - started, iam) + "\n")
    out.flush()
    for problem in problems:
        say(f"demo: {problem}")
    return 1 if problems else 0


def _fail(out: IO[str], as_json: bool, reason: str) -> int:
    if as_json:
        out.write(
            json.dumps({"jobs": [], "audits": {}, "ledger": None, "settled": False, "problems": [reason]})
            + "\n"
        )
        out.flush()
    return 1


if __name__ == "__main__":
    sys.exit(main())
