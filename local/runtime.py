"""The Lambda runtime, stood in for: a function's execution environments (one invocation at a time
each, a cold start for the next), its deadline, its role, and Lambda's rules for what it returns
(``batchItemFailures``, the on-failure record of an asynchronous invocation).

Handlers run in this process, one module per environment, loaded by path after the environment is
set (the core reads its settings once)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3

from local.iam import invoking_as
from local.lambda_context import LambdaContext, new_context

if TYPE_CHECKING:
    from local.iam import FunctionRole
    from local.resources import FunctionSpec

log = logging.getLogger("local.runner")

Handler = Callable[[dict[str, Any], LambdaContext], Any]


class InvocationError(Exception):
    """The function raised, timed out, or returned something its trigger cannot use."""


@dataclass
class InvocationStats:
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"invocations": self.invocations, "errors": self.errors, "timeouts": self.timeouts}


def failure_record(
    function_arn: str, event: dict[str, Any], error: Exception, attempts: int
) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }


class LocalFunction:
    """One function and its execution environments.

    As in Lambda, an environment (here: its own copy of the handler module, so module-level state
    such as a Powertools ``BatchProcessor`` or resolver is not shared) runs one invocation at a time;
    concurrent invocations get another environment, loaded on demand (a cold start). The core
    package itself is imported once and shared by every environment of every function.
    """

    MAX_ENVIRONMENTS = 10

    def __init__(
        self,
        logical_id: str,
        role: str,
        function_name: str,
        path: Path,
        spec: FunctionSpec,
        monotonic: Callable[[], float] = time.monotonic,
        identity: FunctionRole | None = None,
    ) -> None:
        self.logical_id = logical_id
        self.identity = identity  # its execution role: every AWS call it makes signs with it
        self._monotonic = monotonic  # the clock of the invocations' deadlines (injectable in tests)
        self.role = role
        self.function_name = function_name
        self.path = path
        self.spec = spec
        self.timeout_s = float(spec.timeout_s)
        self.memory_mb = int(spec.memory_mb)
        self.stats = InvocationStats()
        self._attribute = spec.handler_function or "lambda_handler"
        self._idle: list[Handler] = []
        self._environments = 0
        self._cond = threading.Condition()

    def warm_up(self) -> None:
        """Load one environment now, so a broken handler fails the start rather than an event."""
        self._release(self._new_environment())

    def _new_environment(self) -> Handler:
        with self._cond:
            self._environments += 1
            number = self._environments
        # the stack's function name: another stack's (or a test's) copy of the handler in this
        # process keeps its own module
        name = self.function_name
        try:
            return load_handler(
                name if number == 1 else f"{name}_{number}", self.path, self._attribute, role=self.identity
            )
        except BaseException:
            with self._cond:
                self._environments -= 1
                self._cond.notify()
            raise

    def _acquire(self) -> Handler:
        with self._cond:
            while not self._idle and self._environments >= self.MAX_ENVIRONMENTS:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
        return self._new_environment()

    def _release(self, handler: Handler) -> None:
        with self._cond:
            self._idle.append(handler)
            self._cond.notify()

    def invoke(self, event: dict[str, Any]) -> Any:
        try:
            handler = self._acquire()
        except Exception as exc:
            log.exception("%s could not be initialised", self.role)
            raise InvocationError(f"{self.role}: init error {type(exc).__name__}") from exc
        context = new_context(self.function_name, self.timeout_s, self.memory_mb, monotonic=self._monotonic)
        try:
            result = handler(event, context)
        except Exception as exc:
            self._count(errors=1)
            log.exception("%s failed (request %s)", self.role, context.aws_request_id)
            raise InvocationError(f"{self.role}: {type(exc).__name__}") from exc
        finally:
            self._release(handler)
        if context.timed_out():
            # Lambda would have stopped it at the deadline: whatever it returned never arrives
            self._count(timeouts=1)
            log.error(
                "%s ran past its %ss timeout (request %s)", self.role, self.timeout_s, context.aws_request_id
            )
            raise InvocationError(f"{self.role}: Task timed out after {self.timeout_s:.2f} seconds")
        self._count()
        return result

    def _count(self, errors: int = 0, timeouts: int = 0) -> None:
        with self._cond:
            self.stats.invocations += 1
            self.stats.errors += errors
            self.stats.timeouts += timeouts


def load_handler(
    module_suffix: str, path: Path, attribute: str = "lambda_handler", role: FunctionRole | None = None
) -> Handler:
    """Import ``functions/<name>/app.py`` as ``verifyfeed_fn_<module_suffix>`` (all four are ``app``).

    With ``role``, the import (the function's init) and every call run as that role: the AWS calls
    they make sign with its credentials and the IAM gate holds them to its policies (local/iam.py)."""
    if role is not None:
        with invoking_as(role):
            handler = load_handler(module_suffix, path, attribute)

        @functools.wraps(handler)  # its module and name, as the handler's own (tests read them)
        def as_role(event: dict[str, Any], context: LambdaContext) -> Any:
            with invoking_as(role):
                return handler(event, context)

        return as_role
    module_name = f"verifyfeed_fn_{module_suffix}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.parent)
    sys.path.insert(0, folder)  # as in Lambda, the function's own folder is importable
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        with suppress(ValueError):
            sys.path.remove(folder)
    return cast(Handler, getattr(module, attribute))


def batch_item_failures(result: Any, message_ids: Collection[str]) -> set[str]:
    """The message ids to keep, per Lambda's rules for ``ReportBatchItemFailures``.

    A null/empty response or an empty/null list means all succeeded; a malformed response, an empty
    or null ``itemIdentifier`` or one not in the batch fails the whole batch.
    """
    if result is None or result == {} or result == "":
        return set()
    if not isinstance(result, dict):
        raise InvocationError("invalid partial batch response")
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise InvocationError("invalid partial batch response")
    keep: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            raise InvocationError(f"invalid itemIdentifier {identifier!r} in batchItemFailures")
        keep.add(identifier)
    return keep


_ROLE_OF_TRIGGER = {"S3": "splitter", "SQS": "uploader", "Api": "callback", "Schedule": "poller"}


def function_role(spec: FunctionSpec) -> str:
    """What drives the function (its first event source), else the folder it lives in."""
    for event in spec.events:
        if event.type in _ROLE_OF_TRIGGER:
            return _ROLE_OF_TRIGGER[event.type]
    return Path(spec.handler_path).parent.name


def as_function(function: LocalFunction) -> boto3.session.Session:
    """A session for what the Lambda service does as ``function``: with its role's credentials."""
    role = function.identity
    if role is None:
        return boto3.session.Session()
    return boto3.session.Session(
        aws_access_key_id=role.access_key, aws_secret_access_key=role.secret_key, aws_session_token=role.token
    )
