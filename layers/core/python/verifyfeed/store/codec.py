"""Plain-dict <-> DynamoDB attribute-value conversion (numbers come back as int)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
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
