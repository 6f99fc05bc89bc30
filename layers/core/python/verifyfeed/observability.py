"""Powertools Logger, Metrics and Tracer shared by every function (one service name).

The Tracer patches only the libraries the functions call through: botocore (every AWS call) at
once, and requests (the upstream) when it is first imported. The X-Ray SDK's default,
``patch_all``, tries a dozen libraries and imports every one installed (requests, sqlite3, ...)
just to patch it, even in a function that never uses it: the callback never calls the upstream.
"""

from __future__ import annotations

from types import ModuleType

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=["botocore"])


def _patch_requests(_module: ModuleType) -> None:
    tracer.patch(["requests"])


if not tracer.disabled:  # tracing on: the X-Ray SDK, and so wrapt, is installed
    from wrapt import register_post_import_hook

    register_post_import_hook(_patch_requests, "requests")  # at once if it is already imported
