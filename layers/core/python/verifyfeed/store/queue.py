"""The work queue (SQS): what the splitter, the uploader's bisection, the poller and the CLI queue.

``Services.queue`` is a ``ports.WorkQueue``; the logic never calls SQS itself, so it runs on an in-memory
queue in unit tests (tests/fakes/). ``SqsWorkQueue`` takes its client from ``verifyfeed.aws`` at
each call (one client per process, created on first use).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from verifyfeed import aws
from verifyfeed.threads import submit


class SqsWorkQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send(self, body: str) -> None:
        aws.sqs().send_message(QueueUrl=self.queue_url, MessageBody=body)

    def send_all(self, bodies: Sequence[str]) -> None:
        send_all(aws.sqs(), self.queue_url, bodies)


SEND_THREADS = 8


def send_all(sqs: Any, queue_url: str, bodies: Sequence[str], attempts: int = 4) -> None:
    """Every body on the queue, ten per ``SendMessageBatch``, up to ``SEND_THREADS`` requests at a
    time (each waits a round trip; a file's thousand batches are a hundred requests); the entries
    SQS refuses are sent again (up to ``attempts`` times in all), and an entry still refused then
    raises — and no request that has not started yet is sent."""
    chunks = [bodies[start : start + 10] for start in range(0, len(bodies), 10)]
    if len(chunks) <= 1:
        for chunk in chunks:
            _send_chunk(sqs, queue_url, chunk, attempts)
        return
    with ThreadPoolExecutor(min(SEND_THREADS, len(chunks)), thread_name_prefix="send") as pool:
        futures = [submit(pool, _send_chunk, sqs, queue_url, chunk, attempts) for chunk in chunks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()  # those not started yet
            raise


def _send_chunk(sqs: Any, queue_url: str, chunk: Sequence[str], attempts: int) -> None:
    entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(chunk)]
    for attempt in range(attempts):
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        if not failed:
            break
        refused = {f["Id"] for f in failed}
        entries = [e for e in entries if e["Id"] in refused]
        if attempt + 1 == attempts:
            raise RuntimeError(f"SQS refused {len(entries)} message(s): {failed[0].get('Code')}")
