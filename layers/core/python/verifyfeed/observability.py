"""Powertools Logger, Metrics and Tracer shared by every function (one service name).

The Tracer patches only the libraries the functions call through: botocore (every AWS call) at
once, and requests (the upstream) when it is first imported. The X-Ray SDK's default,
``patch_all``, tries a dozen libraries and imports every one installed (requests, sqlite3, ...)
just to patch it, even in a function that never uses it: the callback never calls the upstream.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=["botocore"])


def _patch_requests(_module: ModuleType) -> None:
    tracer.patch(["requests"])


# what the X-Ray SDK's botocore patch would record of an S3 call and may name a file (file names
# carry people's names: docs/decisions.md#personal-data)
_S3_NAMING_PARAMETERS = frozenset({"Key", "CopySource", "Prefix"})


def keep_object_keys_out_of_traces(whitelist: dict[str, Any]) -> None:
    """Drop object keys and prefixes from the S3 parameters of the X-Ray SDK's ``whitelist``."""
    for operation in whitelist.get("services", {}).get("s3", {}).get("operations", {}).values():
        if "request_parameters" in operation:
            operation["request_parameters"] = [
                p for p in operation["request_parameters"] if p not in _S3_NAMING_PARAMETERS
            ]


if not tracer.disabled:  # tracing on: the X-Ray SDK, and so wrapt, is installed
    from aws_xray_sdk.ext import boto_utils
    from wrapt import register_post_import_hook

    keep_object_keys_out_of_traces(boto_utils.whitelist)

    register_post_import_hook(_patch_requests, "requests")  # at once if it is already imported
