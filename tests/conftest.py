"""Shared fixtures: a real moto server over HTTP (AWS) for every test session that needs one.

boto3 honours ``AWS_ENDPOINT_URL``, so the code under test reaches moto exactly as it would
reach AWS: through HTTP, with no patching.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The environment the test session was started with. Session fixtures point the process at moto
# and set the functions' settings (tests/integration/conftest.py ``handler_env``) until the
# session ends; a test that starts the product as a subprocess (tests/e2e) gives it this one, so
# what it runs does not depend on which tests ran before it.
ENV_AT_START: dict[str, str] = dict(os.environ)

# The template gives every function a metrics namespace, and Powertools reads it when
# ``verifyfeed.observability`` is first imported: a unit test that imports it before
# ``handler_env`` (tests/integration/conftest.py) sets it would leave the handlers' Metrics without
# one, and every invocation would then fail to flush its metrics.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VerifyFeedTest")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from local.aws_server import MotoServer

    server = MotoServer("127.0.0.1", 0)  # port 0: the kernel picks a free port, read back below
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    from local.iam import install_credentials

    install_credentials()  # the core's clients sign as the invoking function, if any (local/iam.py)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
