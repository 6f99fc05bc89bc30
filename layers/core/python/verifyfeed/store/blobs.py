"""Blob storage (S3): dropped files, batches' claim-check bodies (``claims/``), reports.

``Services.blobs`` is a ``ports.Blobs``; the logic never calls S3 itself, and sees one error, ``BlobError``
(``missing`` when the object is not there), whatever S3 or the network said. ``S3Blobs`` takes its
client from ``verifyfeed.aws`` at each call (one client per process, created on first use).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from aws_lambda_powertools.utilities.streaming import S3Object
from botocore.exceptions import BotoCoreError, ClientError

from verifyfeed import aws
from verifyfeed.ports import BlobError

_MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")
MAX_VERSIONS = 4  # a claim-check body is written once, twice when a split is resumed


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise BlobError(f"{what}: {code}", missing=code in _MISSING, code=code) from exc
    except BotoCoreError as exc:
        raise BlobError(f"{what}: {type(exc).__name__}") from exc


class S3Blobs:
    def __init__(self, client: Any = None) -> None:
        self._client = client  # None: verifyfeed.aws's, at each call (tests may swap it)

    def _s3(self) -> Any:
        return self._client or aws.s3()

    def get(self, bucket: str, key: str) -> bytes:
        with _translated("get"):
            body: bytes = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            return body

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        with _translated("put"):
            self._s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    def put_file(self, bucket: str, key: str, stream: IO[bytes], content_type: str) -> None:
        with _translated("put"):
            self._s3().upload_fileobj(stream, bucket, key, ExtraArgs={"ContentType": content_type})

    def delete_many(self, bucket: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk: list[Any] = [{"Key": k} for k in keys[start : start + 1000]]
            with _translated("delete"):
                self._s3().delete_objects(Bucket=bucket, Delete={"Objects": chunk})

    def delete_every_version(self, bucket: str, key: str) -> None:
        s3 = self._s3()
        for _ in range(MAX_VERSIONS):
            try:
                with _translated("head"):
                    version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
            except BlobError as exc:
                if exc.missing:
                    return
                raise
            with _translated("delete"):
                if version and version != "null":
                    s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
                else:
                    s3.delete_object(Bucket=bucket, Key=key)
                    return

    def open(self, bucket: str, key: str, version: str | None = None) -> IO[bytes]:
        # Powertools' seekable S3 stream; a read error is botocore's and fails the split (retried),
        # which is all the splitter does with it
        return S3Object(bucket=bucket, key=key, version_id=version or None, boto3_client=self._s3())
