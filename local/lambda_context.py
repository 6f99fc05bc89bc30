"""A Lambda context object for local invocations.

Carries the same attributes as the context the Lambda Python runtime passes (the ones Powertools'
``inject_lambda_context`` reads) and a real deadline: ``get_remaining_time_in_millis()`` counts down
from the function's configured timeout, so code that checks its remaining time behaves as in Lambda.
Hand-written: the runtime interface client's ``LambdaContext`` (awslambdaric) reads the function's
name, memory and log group from the process environment, and here four functions share one process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"


@dataclass
class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


@dataclass
class LambdaContext:
    function_name: str
    timeout_s: float = 3.0
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    region: str = LOCAL_REGION
    account_id: str = LOCAL_ACCOUNT_ID
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: CognitoIdentity = field(default_factory=CognitoIdentity)
    client_context: None = None
    tenant_id: str | None = None
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)  # injectable in tests
    started_at: float = -1.0  # the ``monotonic()`` instant the invocation started; -1 = at creation

    def __post_init__(self) -> None:
        if self.started_at < 0:
            self.started_at = self.monotonic()

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        day = time.strftime("%Y/%m/%d", time.gmtime())
        return f"{day}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    @property
    def deadline(self) -> float:
        """The ``monotonic()`` instant the invocation would be stopped at."""
        return self.started_at + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self.monotonic()) * 1000))

    def timed_out(self) -> bool:
        return self.monotonic() >= self.deadline


def new_context(
    function_name: str,
    timeout_s: float,
    memory_mb: int,
    region: str = LOCAL_REGION,
    monotonic: Callable[[], float] = time.monotonic,
) -> LambdaContext:
    """A context for one invocation: a fresh request id and a deadline starting now."""
    return LambdaContext(
        function_name=function_name,
        timeout_s=timeout_s,
        memory_limit_in_mb=memory_mb,
        region=region,
        monotonic=monotonic,
    )
