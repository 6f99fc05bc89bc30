"""Plain-dict <-> DynamoDB attribute-value conversion (numbers come back as int)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

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
