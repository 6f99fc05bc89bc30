"""The splitter end to end on the local stack, and what every AWS call of a file costs, in one child
process: ``python -m bench.split_e2e REPAIR_CSV AUDIT_ROWS UPLOAD_EVENTS [LATENCY_MS] OUT``.

A moto server (``local.aws_server``, its own process) holds the template's resources; the upstream
sandbox (zero latency) answers the uploader. The functions run in this process as the local
runner loads them (``functions/*/app.py``), each with the template's environment. With
``LATENCY_MS``, moto holds every answer that long (``local.aws_server --latency-ms``): a model of
the round trips to AWS that a zero-latency emulator hides.

1. **Lost repair, split.** ``REPAIR_CSV`` is put into the ingest bucket (by the bench's own client:
   not counted) and the splitter handler is invoked on its S3 event: it reads the file from
   moto's S3, stages every batch (bodies to S3, batch records to DynamoDB), releases them to the
   work queue. Timed (wall and this process's CPU, moto's CPU beside it) and every AWS call the
   function makes counted (``bench.aws_calls``).
2. **Lost repair, upload** (a sample). ``UPLOAD_EVENTS`` SQS events of the template's
   ``BatchSize`` messages, received from the work queue as Lambda's event source would (not
   counted: Lambda's poller makes those calls, priced separately), each given to the uploader
   handler: per invocation its wall time, per batch its AWS calls.
3. **Carrier audit, intake.** A file of ``AUDIT_ROWS`` valid audits through the splitter handler:
   rows/s and its calls.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.aws_calls import CallCounter
from bench.services import (
    API_ID,
    API_KEY,
    CALLBACK_SECRET,
    NOW,
    _listening_url,
    point_aws_at,
    start_server,
    stop_server,
    upstream_sandbox,
)

ROOT = Path(__file__).resolve().parent.parent
AUDIT_HEADER = "usage,name,idCard,phone,carLicensePlate,drivingLicenseFilename,attachmentFileUrls"


def _cpu_of(pid: int) -> float:
    """user + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check_digit(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def audit_csv(rows: int) -> bytes:
    """``rows`` distinct, valid carrier audits (usage 2: owner, ID card, mobile, plate)."""
    lines = [AUDIT_HEADER]
    for i in range(rows):
        first17 = f"11010519{80 + i % 20:02d}0101{i % 1000:03d}"
        plate_letter = "ABCDEFGHJK"[(i // 100_000) % 10]
        id_card = first17 + _check_digit(first17)
        lines.append(f"2,张三,{id_card},138{i:08d},京{plate_letter}{i % 100_000:05d},dl.jpg,a.jpg")
    return ("\r\n".join(lines) + "\r\n").encode()


class LogSink:
    """Stands for the functions' stdout (where Lambda's logs go): counts the bytes, keeps none."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)

    def flush(self) -> None:
        pass

    def take(self) -> int:
        taken, self.bytes = self.bytes, 0
        return taken


class Stack:
    """moto in its own process, the sandbox, the template's resources, the functions' clients."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.moto = start_server(["-m", "local.aws_server", "--latency-ms", str(latency_ms)])
        point_aws_at(_listening_url(self.moto, 30))

    def close(self) -> None:
        stop_server(self.moto)

    def moto_cpu(self) -> float:
        return _cpu_of(self.moto.pid)


def run(repair_csv: Path, audit_rows: int, upload_events: int, latency_ms: float = 0.0) -> dict[str, Any]:
    import boto3

    from local.events import s3_put_event, s3_sequencer, sqs_event
    from local.lambda_context import new_context
    from local.resources import create_local_stack
    from local.runtime import load_handler

    stack = Stack(latency_ms)
    try:
        with upstream_sandbox() as upstream_url:
            resources = create_local_stack(
                stack_name="verifyfeed-bench",
                template_path=ROOT / "template.yaml",
                secrets={
                    "UpstreamCredentialsSecret": json.dumps({"apiId": API_ID, "apiKey": API_KEY}),
                    "CallbackSigningSecret": json.dumps({"current": CALLBACK_SECRET}),
                },
            )
            splitter_spec = resources.functions["SplitterFunction"]
            uploader_spec = resources.functions["UploaderFunction"]
            os.environ.update(
                {
                    **resources.env_for("SplitterFunction"),
                    **resources.env_for("UploaderFunction"),
                    "UPSTREAM_BASE_URL": upstream_url,
                    "CLOCK_NOW": NOW,
                    "RETRY_BASE_SECONDS": "0",
                    "POWERTOOLS_TRACE_DISABLED": "1",
                    "POWERTOOLS_METRICS_NAMESPACE": "VerifyFeedBench",
                }
            )
            from verifyfeed import aws

            counter = CallCounter()
            for client in (aws.s3(), aws.sqs(), aws.dynamodb(), aws.secretsmanager()):
                counter.attach(client)
            logs = LogSink()
            sys.stdout = logs  # before the handlers create their loggers
            splitter = load_handler("splitter", ROOT / splitter_spec.handler_path)
            uploader = load_handler("uploader", ROOT / uploader_spec.handler_path)
            mine = boto3.session.Session()  # the bench's own calls: not counted
            s3 = mine.client("s3")
            sqs = mine.client("sqs")
            db = mine.client("dynamodb")
            bucket = os.environ["INGEST_BUCKET"]
            queue_url = os.environ["WORK_QUEUE_URL"]
            batch_size = next(
                (int(e.properties.get("BatchSize", 10)) for e in uploader_spec.events if e.type == "SQS"), 10
            )
            counter.take(db)  # nothing yet, but the handlers' imports
            logs.take()

            def drop(key: str, body: bytes, timeout_s: float, memory_mb: int) -> dict[str, Any]:
                put = s3.put_object(Bucket=bucket, Key=key, Body=body)
                event = s3_put_event(
                    bucket, key, len(body), put["ETag"], put.get("VersionId"), s3_sequencer()
                )
                moto_cpu = stack.moto_cpu()
                cpu = time.process_time()
                started = time.perf_counter()
                result = splitter(event, new_context("splitter", timeout_s, memory_mb))
                wall = time.perf_counter() - started
                job = result["jobs"][0]
                assert job["outcome"] == "split", job
                return {
                    **job,
                    "bytes": len(body),
                    "wall_s": wall,
                    "cpu_s": time.process_time() - cpu,
                    "moto_cpu_s": stack.moto_cpu() - moto_cpu,
                    "log_bytes": logs.take(),
                    **counter.take(db, started),
                }

            data = repair_csv.read_bytes()
            split = drop(
                f"lost-repair/{repair_csv.name}", data, splitter_spec.timeout_s, splitter_spec.memory_mb
            )
            del data
            split["memory_mb"] = splitter_spec.memory_mb
            split["ephemeral_storage_mb"] = splitter_spec.ephemeral_storage_mb
            queued = int(
                sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
                    "Attributes"
                ]["ApproximateNumberOfMessages"]
            )
            assert queued == split["batches_total"], (queued, split["batches_total"])

            invocations: list[float] = []
            batches = 0
            for _ in range(upload_events):
                messages = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=batch_size, AttributeNames=["All"]
                ).get("Messages", [])
                if not messages:
                    break
                event = sqs_event(messages)
                started = time.perf_counter()
                context = new_context("uploader", uploader_spec.timeout_s, uploader_spec.memory_mb)
                reply = uploader(event, context)
                invocations.append(time.perf_counter() - started)
                assert not (reply or {}).get("batchItemFailures"), reply
                handles: list[Any] = [
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
                ]
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=handles)
                batches += len(messages)
            upload = {
                "invocations": len(invocations),
                "batches": batches,
                "batch_size": batch_size,
                "invocation_s": invocations,
                "memory_mb": uploader_spec.memory_mb,
                "log_bytes": logs.take(),
                **counter.take(db),
            }

            audits = None
            if audit_rows:
                audit_body = audit_csv(audit_rows)
                audits = drop(
                    f"carrier-audit/bench-{audit_rows}.csv",
                    audit_body,
                    splitter_spec.timeout_s,
                    splitter_spec.memory_mb,
                )
    finally:
        sys.stdout = sys.__stdout__
        stack.close()
    return {"split": split, "upload": upload, "audits": audits, "latency_ms": latency_ms}


def main(argv: list[str]) -> int:
    repair_csv, audit_rows, upload_events, *latency, out = argv
    result = run(Path(repair_csv), int(audit_rows), int(upload_events), float(latency[0]) if latency else 0.0)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
