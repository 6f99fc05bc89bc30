"""Counting the AWS calls a local run makes, per service and operation, and the DynamoDB request
units they consume.

``CallCounter().attach(client)`` registers botocore ``before-call`` / ``after-call`` hooks on a
client (the functions' own clients, from ``verifyfeed.aws``): every API call made through it is
counted once, when its answer is in (a request botocore sent again after a throttle or a 5xx
would be billed again but is not counted: the local stack refuses none). The
bench's own clients (putting the file, receiving messages as Lambda's event source would) are not
attached, so they are not counted.

DynamoDB request units are worked out as on-demand DynamoDB bills them (standard table class):

- a write: 1 WRU per KB of the item (``PutItem``, an item of ``BatchWriteItem``: the item sent;
  ``UpdateItem``, ``DeleteItem``: the item as found in the table after the run, the larger of
  before and after being what AWS charges; 1 WRU when it is gone), twice that inside
  ``TransactWriteItems`` (a ``ConditionCheck`` too), plus the same again for every global
  secondary index whose key the item carries (the index is written as well);
- a read: 1 RRU per 4 KB of what is read, half for an eventually consistent read, twice for a
  transactional one; a ``Query`` or ``Scan`` rounds the total of its items, a ``GetItem`` that
  finds nothing still costs the minimum.

``settle(client)`` resolves the update sizes once the run is over (it scans the tables with the
given, uncounted client).
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import Counter
from typing import Any

Item = dict[str, Any]


def value_size(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value (wire format ``{"S": ...}``)."""
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        digits = str(data).lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data)) if isinstance(data, str) else len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(value_size({"N": n}) for n in data)
    if kind == "BS":
        return sum(value_size({"B": b}) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    return len(json.dumps(data))


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def key_of(table: str, key: Item) -> tuple[str, str]:
    return table, json.dumps(key, sort_keys=True)


class DynamoUnits:
    """What the DynamoDB calls of a run consume, in request units."""

    def __init__(self) -> None:
        self.rru = 0.0
        self.wru = 0.0
        # writes whose size is known only after the run: (table, key) -> [multiplier, count]
        self._pending: dict[tuple[str, str], list[float]] = {}
        self._put_items: list[tuple[str, Item, float]] = []

    def _write(self, table: str, item: Item | None, key: Item | None, multiplier: float) -> None:
        if item is not None:
            self._put_items.append((table, item, multiplier))
        elif key is not None:
            slot = self._pending.setdefault(key_of(table, key), [multiplier, 0.0])
            slot[1] += 1

    @staticmethod
    def _read_units(size: int, consistent: bool, transactional: bool = False) -> float:
        units = float(max(1, math.ceil(size / 4096)))
        if transactional:
            return 2 * units
        return units if consistent else units / 2

    def record(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        table = str(request.get("TableName", ""))
        consistent = bool(request.get("ConsistentRead", False))
        if operation == "PutItem":
            self._write(table, request["Item"], None, 1)
        elif operation in ("UpdateItem", "DeleteItem"):
            self._write(table, None, request["Key"], 1)
        elif operation == "BatchWriteItem":
            for name, writes in request.get("RequestItems", {}).items():
                for write in writes:
                    if "PutRequest" in write:
                        self._write(name, write["PutRequest"]["Item"], None, 1)
                    else:
                        self._write(name, None, write["DeleteRequest"]["Key"], 1)
        elif operation == "TransactWriteItems":
            for entry in request.get("TransactItems", []):
                (kind, body), *_ = entry.items()
                if kind == "Put":
                    self._write(body["TableName"], body["Item"], None, 2)
                else:  # Update, Delete, ConditionCheck
                    self._write(body["TableName"], None, body["Key"], 2)
        elif operation == "GetItem":
            self.rru += self._read_units(item_size(response.get("Item", {})), consistent)
        elif operation in ("Query", "Scan"):
            size = sum(item_size(i) for i in response.get("Items", []))
            self.rru += self._read_units(size, consistent)
        elif operation == "BatchGetItem":
            for name, items in response.get("Responses", {}).items():
                strong = bool(request.get("RequestItems", {}).get(name, {}).get("ConsistentRead"))
                self.rru += sum(self._read_units(item_size(i), strong) for i in items)
        elif operation == "TransactGetItems":
            for entry in response.get("Responses", []):
                self.rru += self._read_units(item_size(entry.get("Item", {})), True, transactional=True)

    def settle(self, client: Any) -> None:
        """Price the writes: item sizes (scanned after the run for updates) and index writes."""
        tables = {t for t, _, _ in self._put_items} | {t for t, _ in self._pending}
        found: dict[tuple[str, str], Item] = {}
        indexes: dict[str, list[list[str]]] = {}
        for table in tables:
            described = client.describe_table(TableName=table)["Table"]
            key_names = [k["AttributeName"] for k in described["KeySchema"]]
            indexes[table] = [
                [k["AttributeName"] for k in index["KeySchema"]]
                for index in described.get("GlobalSecondaryIndexes", [])
            ]
            for page in client.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    found[key_of(table, {k: item[k] for k in key_names})] = item

        def units(table: str, item: Item | None) -> float:
            if item is None:
                return 1.0
            per_write = max(1, math.ceil(item_size(item) / 1024))
            written_indexes = sum(1 for names in indexes.get(table, []) if all(n in item for n in names))
            return float(per_write * (1 + written_indexes))

        for table, item, multiplier in self._put_items:
            self.wru += multiplier * units(table, item)
        for (table, key), (multiplier, count) in self._pending.items():
            self.wru += multiplier * count * units(table, found.get((table, key)))
        self._put_items.clear()
        self._pending.clear()


class CallCounter:
    """Every API call made through the attached clients, by ``service.Operation``; the DynamoDB
    request units; the bytes written to S3 per key prefix (the first path segment)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.dynamodb = DynamoUnits()
        self.s3_put_bytes: Counter[str] = Counter()
        self.span: dict[str, list[float]] = {}  # operation -> [first, last] answer (perf_counter)
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(f"before-call.{service}", self._before)
        if service == "s3":
            client.meta.events.register("before-parameter-build.s3.PutObject", self._s3_put)
        client.meta.events.register(f"after-call.{service}", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_request"] = params

    def _s3_put(self, params: dict[str, Any], **_: Any) -> None:
        body = params.get("Body", b"")
        try:
            size = len(body)  # bytes, str, s3transfer's ReadFileChunk
        except TypeError:
            size = 0
        with self._lock:
            self.s3_put_bytes[str(params.get("Key", "")).split("/", 1)[0]] += size

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        request = context.get("bench_request", {})
        with self._lock:
            name = f"{service}.{operation}"
            self.calls[name] += 1
            now = time.perf_counter()
            self.span.setdefault(name, [now, now])[1] = now
            if service == "dynamodb":
                body = request.get("body") or b"{}"
                self.dynamodb.record(operation, json.loads(body), parsed)

    def take(self, settle_with: Any, since: float = 0.0) -> dict[str, Any]:
        """The counts so far (then reset), with the DynamoDB units settled against the tables; the
        first and last answer of each operation in seconds after ``since`` (a ``perf_counter``)."""
        with self._lock:
            self.dynamodb.settle(settle_with)
            taken = {
                "calls": dict(sorted(self.calls.items())),
                "dynamodb_rru": self.dynamodb.rru,
                "dynamodb_wru": self.dynamodb.wru,
                "s3_put_bytes": dict(self.s3_put_bytes),
                "span_s": {
                    k: [round(a - since, 3), round(b - since, 3)] for k, (a, b) in sorted(self.span.items())
                },
            }
            self.calls.clear()
            self.span.clear()
            self.s3_put_bytes.clear()
            self.dynamodb = DynamoUnits()
        return taken
