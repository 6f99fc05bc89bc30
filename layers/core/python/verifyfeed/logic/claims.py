"""Batch bodies kept under ``claims/``: deleting one once nothing will send it again."""

from __future__ import annotations

from botocore.exceptions import ClientError

from verifyfeed import aws

MAX_CLAIM_VERSIONS = 4  # a claim is written once, twice when a split is resumed


def delete_claim(bucket: str, key: str) -> None:
    """Every version of the claim (the newest each time: the functions have no list permission),
    rather than a delete marker that leaves the data behind. Raises what S3 raises."""
    s3 = aws.s3()
    for _ in range(MAX_CLAIM_VERSIONS):
        try:
            version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return
            raise
        if version and version != "null":
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
            return
