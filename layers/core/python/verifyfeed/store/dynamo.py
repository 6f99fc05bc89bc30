"""What every DynamoDB store shares: attribute-value conversion, SDK errors translated, paged
queries, and conditional writes and transactions (a failed condition is an answer, not an error)."""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from verifyfeed.ports import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SDK_ERRORS = (ClientError, BotoCoreError)


def store_error(what: str, exc: ClientError | BotoCoreError) -> StoreError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return StoreError(f"{what}: {code}: {exc.response.get('Error', {}).get('Message', '')}", code=code)
    return StoreError(f"{what}: {type(exc).__name__}")


def translate_errors[Store: type](cls: Store) -> Store:
    """A store's public methods raise ``ports.StoreError`` where the SDK raised its own errors, so
    the logic never sees botocore (a condition a method expects is handled inside it first)."""
    for name, method in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(method):
            setattr(cls, name, _translating(method))
    return cls


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    what = method.__qualname__
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(*args, **kwargs)
            except _SDK_ERRORS as exc:
                raise store_error(what, exc) from exc

        return generator

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except _SDK_ERRORS as exc:
            raise store_error(what, exc) from exc

    return call


_ser = TypeSerializer()
_de = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        plain = _de.deserialize(value)
        out[key] = int(plain) if isinstance(plain, Decimal) and plain == int(plain) else plain
    return out


def attr(value: Any) -> Any:
    return _ser.serialize(value)


def query_items(
    db: DynamoDBClient, query: dict[str, Any], limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every item a ``Query`` matches (at most ``limit``), as plain dicts, fetching pages lazily."""

    def pages() -> Iterator[dict[str, Any]]:
        kwargs = dict(query)
        while True:
            page = db.query(**kwargs)
            yield from (from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return pages() if limit is None else islice(pages(), limit)


def query_count(db: DynamoDBClient, query: dict[str, Any]) -> int:
    """How many items a ``Query`` matches, counted without reading them."""
    kwargs = {**query, "Select": "COUNT"}
    total = 0
    while True:
        page = db.query(**kwargs)
        total += int(page.get("Count", 0))
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# ---- conditional writes and transactions ---------------------------------------------------------


def condition_failed(exc: ClientError) -> bool:
    """The write's condition (or one of a transaction's) did not hold: nothing was written."""
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons", [])
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons
    return False


def cancelled_by(exc: ClientError, index: int) -> bool:
    """Item ``index`` of a cancelled transaction failed its condition."""
    reasons = exc.response.get("CancellationReasons", [])
    return index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed"


@dataclass
class Condition:
    """What the condition of the writes in a ``conditional()`` block came to."""

    error: ClientError | None = None  # the SDK's answer when the condition failed

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def item(self) -> dict[str, Any] | None:
        """The item as the failed condition found it (``ReturnValuesOnConditionCheckFailure``)."""
        if self.error is None:
            return None
        item: dict[str, Any] | None = self.error.response.get("Item")  # type: ignore[assignment]
        return item


@contextmanager
def conditional(
    stale: Callable[[], Exception] | None = None,
    *,
    guard: tuple[int, Callable[[], Exception]] | None = None,
) -> Iterator[Condition]:
    """Conditional writes: a failed condition raises ``stale()`` (caused by the SDK's error) or,
    without ``stale``, is swallowed and told by the ``Condition`` yielded; other errors go on.

    ``guard=(i, error)``: item ``i`` of the transaction only checks that what it counts on is
    there (the job); when it failed and the item before it held, ``error()`` is raised instead."""
    condition = Condition()
    try:
        yield condition
    except ClientError as exc:
        if guard is not None and cancelled_by(exc, guard[0]) and not cancelled_by(exc, guard[0] - 1):
            raise guard[1]() from exc
        if not condition_failed(exc):
            raise
        if stale is not None:
            raise stale() from exc
        condition.error = exc


def put_if_absent(db: DynamoDBClient, table: str, values: dict[str, Any]) -> bool:
    """Create the item; False (and nothing written) when an item with that key exists."""
    with conditional() as put:
        db.put_item(TableName=table, Item=to_item(values), ConditionExpression="attribute_not_exists(pk)")
    return not put.failed


_CONFLICT_ATTEMPTS = 4


def transaction_conflict(exc: ClientError) -> bool:
    """DynamoDB cancelled a transaction because another one was writing one of its items (and no
    condition failed): nothing was written, and the same request may simply be sent again."""
    if exc.response.get("Error", {}).get("Code", "") != "TransactionCanceledException":
        return False
    codes = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
    return "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes


def write_transaction(db: DynamoDBClient, items: list[dict[str, Any]]) -> None:
    """``TransactWriteItems``, sent again (after a short jittered pause, at most 4 times in all) when
    it lost a race to another transaction: workers of one job collide on its counters, botocore
    does not retry that, and a conflict must not be mistaken for a lost answer after a charged call."""
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            db.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
            return
        except ClientError as exc:
            if attempt + 1 == _CONFLICT_ATTEMPTS or not transaction_conflict(exc):
                raise
            time.sleep(random.uniform(0.01, 0.05) * 2**attempt)  # noqa: S311 - jitter, not security
