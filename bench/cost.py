"""What a lost-repair file costs in AWS, from the calls a local run counted (``bench.split_e2e``)
times published list prices.

PRICES are **us-east-1 list prices as of 2026-12-01, written down from AWS's public price pages
without fetching them (this machine has no internet): check them before relying on the figures.**
Free tiers are left out. Upstream charges (a ``state`` 1 answer is charged by the upstream) are
not AWS costs and are not here.

What is priced, and how (docs/performance.md#what-a-million-rows-cost):

- Lambda: requests, and GB-seconds = duration × the template's ``MemorySize``. The splitter's
  duration is its invocation's wall time in the local run; the uploader's is the mean of the
  sampled invocations (``BatchSize`` messages each) times the invocations the file needs. The
  upstream sandbox answers at once: every 100 ms the real upstream takes per batch adds
  ``upstream_100ms``. Lambda gives a function CPU in proportion to its memory (one vCPU at
  1,769 MB), so a CPU-bound duration is at least ``cpu_s × 1769 / MemorySize``: ``by_memory``
  shows the splitter's duration and cost at other memory sizes on that bound. x86_64 and arm64
  are priced on the same durations (no arm64 machine measured them).
- DynamoDB on demand: the request units counted (``bench.aws_calls``).
- SQS: the splitter's ``SendMessageBatch`` calls (one request each: a batch of ten messages is far
  below 64 KB), and per uploader invocation the event source's ``ReceiveMessage`` and
  ``DeleteMessageBatch`` (the idle long polls of the event source are a fixed cost per hour, not
  per file).
- S3: PUT-class (PUT, COPY, POST, LIST) and GET-class (GET, HEAD) requests; DELETE is free. The
  dropped file's own PUT is counted; storage: the file for ``RawUploadRetentionDays``, the
  reports per month kept, the claim-check bodies while they wait (deleted when their batch succeeds).
- Secrets Manager API calls, CloudWatch Logs ingestion (the bytes the functions printed: logs
  and EMF metrics).
"""

from __future__ import annotations

import math
from typing import Any

PRICE_DATE = "2026-12-01"
REGION = "us-east-1"
PRICES: dict[str, float] = {
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_rru": 0.125 / 1e6,  # on-demand read request unit
    "sqs_request": 0.40 / 1e6,  # standard queue
    "s3_put_class": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get_class": 0.0004 / 1000,  # GET, SELECT, HEAD and the rest but DELETE
    "s3_gb_month": 0.023,  # S3 Standard, first 50 TB
    "secretsmanager_call": 0.05 / 10_000,
    "logs_gb": 0.50,  # CloudWatch Logs ingestion (standard)
}
ARCHITECTURES = ("x86_64", "arm64")
FULL_VCPU_MB = 1769
S3_PUT_CLASS = {"PutObject", "CopyObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload"}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}


def _calls(counted: dict[str, Any], service: str) -> dict[str, float]:
    prefix = service + "."
    return {k.removeprefix(prefix): float(v) for k, v in counted["calls"].items() if k.startswith(prefix)}


def _lambda(seconds: float, memory_mb: int, invocations: float) -> dict[str, Any]:
    gb_s = seconds * memory_mb / 1024
    priced = {
        a: gb_s * PRICES[f"lambda_gb_s_{a}"] + invocations * PRICES["lambda_request"] for a in ARCHITECTURES
    }
    return {
        "invocations": invocations,
        "seconds": seconds,
        "memory_mb": memory_mb,
        "gb_s": gb_s,
        "usd": priced,
    }


def file_cost(run: dict[str, Any], raw_retention_days: int = 30, claims_hours: float = 1.0) -> dict[str, Any]:
    """The AWS cost of the split file of ``run`` (``bench.split_e2e``'s result) end to end."""
    split, upload = run["split"], run["upload"]
    batches = split["batches_total"]
    per_batch = 1.0 / max(1, upload["batches"])
    invocations = math.ceil(batches / upload["batch_size"])
    mean_invocation = sum(upload["invocation_s"]) / max(1, len(upload["invocation_s"]))
    # the sample's batches were full SQS batches: what the file's batches need, by proportion
    scale = batches * per_batch

    lam = {
        "splitter": _lambda(split["wall_s"], split["memory_mb"], 1),
        "uploader": _lambda(mean_invocation * invocations, upload["memory_mb"], invocations),
    }
    by_memory = {}
    for memory in (512, 1024, FULL_VCPU_MB, 3008):
        seconds = max(split["wall_s"], split["cpu_s"] * FULL_VCPU_MB / memory)
        by_memory[memory] = _lambda(seconds, memory, 1)

    wru = split["dynamodb_wru"] + upload["dynamodb_wru"] * scale
    rru = split["dynamodb_rru"] + upload["dynamodb_rru"] * scale
    sqs_requests = sum(_calls(split, "sqs").values()) + sum(_calls(upload, "sqs").values()) * scale
    sqs_requests += 2 * invocations  # the event source: ReceiveMessage + DeleteMessageBatch
    s3_put = 1.0  # the dropped file
    s3_get = 0.0
    for counted, factor in ((split, 1.0), (upload, scale)):
        for operation, n in _calls(counted, "s3").items():
            if operation in S3_PUT_CLASS or operation.startswith("List"):
                s3_put += n * factor
            elif operation not in S3_FREE:
                s3_get += n * factor
    secrets = sum(_calls(split, "secretsmanager").values()) + sum(_calls(upload, "secretsmanager").values())
    log_bytes = split.get("log_bytes", 0) + upload.get("log_bytes", 0) * scale

    gb = 1e9
    puts = split["s3_put_bytes"]
    storage = {
        "file_gb_month": split["bytes"] / gb * raw_retention_days / 30,
        "reports_gb_month": puts.get("reports", 0) / gb,
        "claims_gb_month": puts.get("claims", 0) / gb * claims_hours / (30 * 24),
    }
    others = {
        "dynamodb": wru * PRICES["dynamodb_wru"] + rru * PRICES["dynamodb_rru"],
        "sqs": sqs_requests * PRICES["sqs_request"],
        "s3_requests": s3_put * PRICES["s3_put_class"] + s3_get * PRICES["s3_get_class"],
        "s3_storage": sum(storage.values()) * PRICES["s3_gb_month"],
        "secretsmanager": secrets * PRICES["secretsmanager_call"],
        "logs": log_bytes / gb * PRICES["logs_gb"],
    }
    total = {a: sum(f["usd"][a] for f in lam.values()) + sum(others.values()) for a in ARCHITECTURES}
    upstream_100ms = {
        a: batches * 0.1 * upload["memory_mb"] / 1024 * PRICES[f"lambda_gb_s_{a}"] for a in ARCHITECTURES
    }
    return {
        "region": REGION,
        "price_date": PRICE_DATE,
        "rows": split["rows_read"],
        "batches": batches,
        "lambda": lam,
        "splitter_by_memory": by_memory,
        "dynamodb": {"wru": wru, "rru": rru},
        "sqs_requests": sqs_requests,
        "s3": {"put_class": s3_put, "get_class": s3_get, **storage},
        "secretsmanager_calls": secrets,
        "log_bytes": log_bytes,
        "usd": others,
        "total_usd": total,
        "upstream_100ms_usd": upstream_100ms,
    }


def usd(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def print_cost(cost: dict[str, Any]) -> None:
    rows = cost["rows"]
    print(
        f"\nwhat a {rows:,}-row lost-repair file costs in AWS, end to end ({cost['batches']} batches): "
        f"the calls counted in this run × {cost['region']} list prices of {cost['price_date']} "
        "(bench/cost.py; check them before relying)"
    )
    for name, fn in cost["lambda"].items():
        print(
            f"  Lambda {name:9} {fn['invocations']:>5.0f} invocation(s), {fn['seconds']:7.2f} s × "
            f"{fn['memory_mb']} MB = {fn['gb_s']:7.2f} GB-s   "
            + "   ".join(f"{a} {usd(fn['usd'][a])}" for a in ARCHITECTURES)
        )
    d = cost["dynamodb"]
    s3 = cost["s3"]
    p = cost["usd"]
    print(f"  DynamoDB on demand: {d['wru']:,.0f} WRU, {d['rru']:,.0f} RRU   {usd(p['dynamodb'])}")
    print(f"  SQS: {cost['sqs_requests']:,.0f} requests (incl. the event source's)   {usd(p['sqs'])}")
    print(
        f"  S3: {s3['put_class']:,.0f} PUT-class, {s3['get_class']:,.0f} GET-class requests   "
        f"{usd(p['s3_requests'])}; storage {usd(p['s3_storage'])} (the file for its retention, "
        "a month of reports, the claim checks while queued)"
    )
    print(
        f"  Secrets Manager: {cost['secretsmanager_calls']:.0f} calls {usd(p['secretsmanager'])}; "
        f"CloudWatch Logs: {cost['log_bytes'] / 1e6:.1f} MB {usd(p['logs'])}"
    )
    print(
        "  total: " + ", ".join(f"{a} {usd(cost['total_usd'][a])}" for a in ARCHITECTURES) + "; each 100 ms "
        "of upstream latency per batch adds "
        + ", ".join(f"{a} {usd(cost['upstream_100ms_usd'][a])}" for a in ARCHITECTURES)
    )
    print("  the splitter at other memory sizes (duration ≥ its CPU time × 1769 MB / MemorySize):")
    for memory, fn in cost["splitter_by_memory"].items():
        print(
            f"    {memory:>5} MB: ≥ {fn['seconds']:6.2f} s, {fn['gb_s']:6.2f} GB-s   "
            + "   ".join(f"{a} {usd(fn['usd'][a])}" for a in ARCHITECTURES)
        )
