"""The event sources that drive the functions, as AWS drives them: S3 → splitter
(``BucketNotifications``), SQS → uploader (``QueuePoller``), EventBridge → poller
(``run_schedule``: a timer).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from local.events import s3_put_event, s3_sequencer, scheduled_event, sqs_event
from local.lambda_context import LambdaContext
from local.runtime import InvocationError, LocalFunction, as_function, batch_item_failures, failure_record
from local.snapshot import Submitted

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from local.resources import FunctionSpec, LocalStack

log = logging.getLogger("local.runner")

S3_ASYNC_RETRIES = 2  # Lambda retries a failed asynchronous invocation twice


class BucketNotifications:
    """S3 → splitter for the ingest bucket of ``stack``: an ``ObjectCreated:Put`` notification of each
    object put, invoked asynchronously, two retries on error (as Lambda does for S3), then the
    on-failure destination (``record_failure``); with ``watch``, of every new version anyone puts
    under a trigger's prefix."""

    def __init__(
        self, stack: LocalStack, splitter: LocalFunction, stop: threading.Event, submitted: list[Submitted]
    ) -> None:
        self.stack = stack
        self.splitter = splitter
        self.submitted = submitted  # every object notified: its job as the splitter derives it
        self._stop = stop
        self._s3: S3Client = boto3.client("s3")
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="s3-notify")
        self._futures: list[Future[None]] = []
        self._seen_versions: set[str] = set()  # objects the splitter was notified of
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Notifications still being handled."""
        return sum(1 for f in self._futures if not f.done())

    def close(self) -> None:
        for future in self._futures:
            with suppress(Exception):
                future.result(timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def put(self, path: Path, key: str, kind: str, display: str) -> str:
        """Put ``path`` under ``key`` and notify the splitter. Returns the key."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        bucket = self.stack.bucket
        with self._lock:  # the bucket watcher must not notify of this object too
            put = self._s3.put_object(
                Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type
            )
            self._seen_versions.add(put.get("VersionId") or put["ETag"])
        head = self._s3.head_object(Bucket=bucket, Key=key)
        return self.notify(key, kind, display, head)

    def notify(self, key: str, kind: str, display: str, head: Mapping[str, Any]) -> str:
        """The ``ObjectCreated:Put`` notification of an object just put, to the splitter (async)."""
        event = s3_put_event(
            bucket=self.stack.bucket,
            key=key,
            size=head["ContentLength"],
            etag=head["ETag"],
            version_id=head.get("VersionId"),
            sequencer=s3_sequencer(),
        )
        from verifyfeed.logic.splitter import DroppedObject
        from verifyfeed.pii import mask_object_key

        job_id = DroppedObject.from_event_record(event["Records"][0]).job_id
        self.submitted.append(Submitted(file=display, key=key, kind=kind, job_id=job_id))
        if notifies(self.splitter.spec, key):
            self._futures.append(self._pool.submit(self._invoke, event))
        else:
            log.warning(
                "no S3 trigger of the splitter matches %s (job %s): no notification",
                mask_object_key(key),
                job_id,
            )
        log.info("uploaded a %s file as job %s", kind, job_id)  # not its name: names carry people's
        return key

    def watch(self, kind_of: Callable[[str], str]) -> None:
        """Notify of objects put by others: every new version under a trigger's prefix, until stopped."""
        s3: S3Client = boto3.client("s3")
        prefixes = sorted({t.key_filter("prefix") for t in self.splitter.spec.s3_triggers}) or [""]
        bucket = self.stack.bucket
        while not self._stop.wait(0.5):
            for prefix in prefixes:
                try:
                    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
                    versions = [v for page in pages for v in page.get("Versions", [])]
                except Exception:
                    if not self._stop.is_set():
                        log.exception("list_object_versions failed")
                    continue
                for version in versions:
                    version_id, key = version.get("VersionId", ""), version.get("Key", "")
                    with self._lock:
                        if (version_id or version.get("ETag", "")) in self._seen_versions:
                            continue
                        self._seen_versions.add(version_id or version.get("ETag", ""))
                    try:
                        if version_id and version_id != "null":
                            head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
                        else:
                            head = s3.head_object(Bucket=bucket, Key=key)
                    except Exception:
                        log.exception("head_object failed for a new object")
                        continue
                    self.notify(key, kind_of(key), key, head)

    def _invoke(self, event: dict[str, Any]) -> None:
        attempts = 1 + S3_ASYNC_RETRIES
        for attempt in range(attempts):
            if self._stop.is_set():
                return
            try:
                self.splitter.invoke(event)
                return
            except InvocationError as exc:
                log.warning("%s (attempt %d of %d)", exc, attempt + 1, attempts)
                if attempt + 1 == attempts:
                    record_failure(self.stack, self.splitter, event, exc, attempts)
                else:
                    self._stop.wait(attempt + 1)  # Lambda waits minutes; a demo cannot


def record_failure(
    stack: LocalStack, function: LocalFunction, event: dict[str, Any], error: Exception, attempts: int
) -> None:
    """As Lambda does with an on-failure destination: the event and the error, on its queue."""
    url = function.spec.on_failure_queue_url
    if url is None:
        log.error("%s: event dropped after %d attempts (no on-failure destination)", function.role, attempts)
        return
    where = LambdaContext(function.function_name, region=stack.region, account_id=stack.account_id)
    record = failure_record(where.invoked_function_arn, event, error, attempts)
    # Lambda sends to the destination with the function's role
    as_function(function).client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))
    log.error("%s: %d attempts failed; the event is on the on-failure queue", function.role, attempts)


def notifies(spec: FunctionSpec, key: str) -> bool:
    """Whether one of the function's S3 triggers (prefix/suffix filters) fires for ``key``."""
    triggers = spec.s3_triggers
    return not triggers or any(
        key.startswith(t.key_filter("prefix")) and key.endswith(t.key_filter("suffix")) for t in triggers
    )


class QueuePoller:
    """SQS → uploader: ``run`` is one poller (the runner starts ``MaximumConcurrency`` of them).
    ``BatchSize`` messages at a time, the uploader invoked, exactly the messages not reported in
    ``batchItemFailures`` deleted; nothing deleted when the invocation fails (raises, times out,
    answers malformed failures). Redelivery and the move to the dead-letter queue after
    ``maxReceiveCount`` are SQS's own (moto's)."""

    def __init__(
        self, queue_url: str, queue_arn: str, uploader: LocalFunction, stop: threading.Event
    ) -> None:
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.uploader = uploader
        source = sqs_source(uploader.spec)
        self.batch_size = max(1, min(10, int(source.get("BatchSize", 10))))
        self.partial = "ReportBatchItemFailures" in source.get("FunctionResponseTypes", [])
        self.concurrency = int(source.get("ScalingConfig", {}).get("MaximumConcurrency", 2))
        self.in_flight = 0  # batches received and not yet deleted or given up
        self._stop = stop
        self._lock = threading.Lock()

    def run(self) -> None:
        # a client per thread; the event source mapping polls with the function's role
        sqs: SQSClient = as_function(self.uploader).client("sqs")
        while not self._stop.is_set():
            try:
                received = sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.batch_size,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception:
                if not self._stop.is_set():
                    log.exception("receive_message failed")
                    self._stop.wait(1)
                continue
            messages = received.get("Messages", [])
            if not messages:
                continue
            with self._lock:
                self.in_flight += 1
            try:
                self._deliver(sqs, messages)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _deliver(self, sqs: SQSClient, messages: list[MessageTypeDef]) -> None:
        event = sqs_event(messages, queue_arn=self.queue_arn)
        ids = {m["MessageId"] for m in messages}
        received = ", ".join(
            f"{m['MessageId'][:8]}(#{m.get('Attributes', {}).get('ApproximateReceiveCount', '?')})"
            for m in messages
        )
        try:
            result = self.uploader.invoke(event)
            keep = batch_item_failures(result, ids) if self.partial else set()
        except InvocationError as exc:
            log.warning("uploader failed on %s; nothing deleted, all redelivered: %s", received, exc)
            return
        done = [m for m in messages if m["MessageId"] not in keep]
        log.info("uploader handled %s; %d deleted, %d left for redelivery", received, len(done), len(keep))
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            try:
                reply = sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
                    ],
                )
            except Exception:  # e.g. the role may not delete (the IAM gate says why): redelivered
                log.exception("delete_message_batch failed; the messages will be redelivered")
                continue
            for failed in reply.get("Failed", []):
                log.warning("delete_message_batch: %s", failed.get("Message", failed.get("Code")))


def sqs_source(spec: FunctionSpec) -> dict[str, Any]:
    return spec.sqs.properties if spec.sqs else {}


def run_schedule(
    poller: LocalFunction, stop: threading.Event, every_s: float, clock_now: str, rule_name: str
) -> None:
    """EventBridge → poller: a scheduled event every ``every_s`` seconds until stopped."""
    from verifyfeed.clock import clock_from_setting

    clock = clock_from_setting(clock_now)
    while not stop.wait(every_s):
        with suppress(InvocationError):  # logged by invoke; EventBridge just fires again
            poller.invoke(scheduled_event(clock.now(), rule_name=rule_name))
