"""Plain-dict <-> DynamoDB attribute-value conversion (numbers come back as int)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# what a store call raises when DynamoDB refused or could not be reached (a stale transition or a
# condition is the store's own exception): the logic retries or reports these, never botocore's
STORE_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

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
