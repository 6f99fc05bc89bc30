"""The resend ledger's storage: one S3 object of record keys per split file, the lock item its
writers take (``pk=LEDGER, sk=LOCK``), and file fingerprints (docs/decisions.md#resend-ledger)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from verifyfeed.models.ids import iso
from verifyfeed.models.ledger import LedgerEntry, LedgerObject
from verifyfeed.ports import LedgerBusy
from verifyfeed.store.dynamo import attr, conditional, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

_LOCK = {"pk": attr("LEDGER"), "sk": attr("LOCK")}


@translate_errors
class LedgerStore:
    def __init__(self, bucket: str, prefix: str, table: str, s3: S3Client, db: DynamoDBClient) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.table = table
        self._s3 = s3
        self._db = db

    def object_key(self, day: date, job_id: str) -> str:
        return f"{self.prefix}{day.isoformat()}/{job_id}.keys"

    def list_since(self, first_day: date) -> list[LedgerObject]:
        """Every file's object from ``first_day`` (China date) on."""
        found: list[LedgerObject] = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, StartAfter=f"{self.prefix}{first_day.isoformat()}"
        )
        for page in pages:
            for item in page.get("Contents", []):
                parsed = self._parse(item["Key"])
                if parsed is not None and parsed[0] >= first_day:
                    found.append(LedgerObject(item["Key"], parsed[1], parsed[0], str(item.get("ETag", ""))))
        return found

    def _parse(self, key: str) -> tuple[date, str] | None:
        day, _, name = key.removeprefix(self.prefix).partition("/")
        if not name.endswith(".keys") or "/" in name:
            return None
        try:
            return date.fromisoformat(day), name.removesuffix(".keys")
        except ValueError:
            return None

    def read(self, obj: LedgerObject) -> LedgerEntry:
        body = self._s3.get_object(Bucket=self.bucket, Key=obj.key)["Body"].read()
        return LedgerEntry.decode(body)

    def write(self, day: date, entry: LedgerEntry) -> None:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self.object_key(day, entry.job_id),
            Body=entry.encode(),
            ContentType="application/octet-stream",
        )

    # ---- the lock -----------------------------------------------------------------------------

    def acquire(self, holder: str, now: datetime, lease_seconds: int, wait_seconds: float) -> None:
        """Take the lease (or take over an expired one), waiting up to ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        pause = 0.05
        while True:
            if self._try_acquire(holder, now.timestamp(), lease_seconds):
                return
            if time.monotonic() >= deadline:
                raise LedgerBusy(f"the ledger lock stayed held for {wait_seconds:.0f} s")
            time.sleep(pause)  # another split is committing: a second at most, as a rule
            now = datetime.fromtimestamp(now.timestamp() + pause, tz=now.tzinfo)
            pause = min(pause * 2, 1.0)

    def _try_acquire(self, holder: str, now: float, lease_seconds: int) -> bool:
        with conditional() as take:
            self._db.put_item(
                TableName=self.table,
                Item={
                    **_LOCK,
                    "holder": attr(holder),
                    "expires_epoch": {"N": str(int(now) + lease_seconds)},
                    "taken_at": attr(iso(datetime.fromtimestamp(now, UTC))),
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_epoch < :now OR holder = :me",
                ExpressionAttributeValues={":now": {"N": str(int(now))}, ":me": attr(holder)},
            )
        return not take.failed

    def release(self, holder: str) -> None:
        with conditional():  # failed: expired and taken over, nothing of ours to release
            self._db.delete_item(
                TableName=self.table,
                Key=_LOCK,
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": attr(holder)},
            )

    # ---- file fingerprints --------------------------------------------------------------------

    def fingerprint(self, digest: str) -> dict[str, Any] | None:
        """The split recorded for a file content fingerprint (a keyed digest), if any."""
        item = self._db.get_item(
            TableName=self.table, Key={"pk": attr(f"FILE#{digest}"), "sk": attr("FILE")}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return {k: v.get("S", v.get("N")) for k, v in item.items()}

    def record_fingerprint(self, digest: str, job_id: str, day: date) -> None:
        self._db.put_item(
            TableName=self.table,
            Item={
                "pk": attr(f"FILE#{digest}"),
                "sk": attr("FILE"),
                "job_id": attr(job_id),
                "day": attr(day.isoformat()),
            },
        )
