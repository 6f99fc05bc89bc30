"""The lost-repair request body is serialised by pydantic in one call; it must be the bytes the
generic path (``json.dumps`` of the dumped records, compact, UTF-8) gives."""

from __future__ import annotations

import json

from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.rules.hashing import sha256_hex
from verifyfeed.upstream.client import _RECORD_LIST, _compact_json


def test_records_serialise_as_json_dumps_would() -> None:
    names = ["张三", "阿卜杜·热合曼", "John O'Neil-Smith Jr.", "Zoë", "𠀀𠀁", 'a"b', "a\\b"]
    records = [
        RepairRecord(
            name=name,
            idcode=sha256_hex(str(i)),
            usedPhone=sha256_hex(f"p{i}") if i % 2 else "",
            authCode=f"A{i}",
        )
        for i, name in enumerate(names)
    ]
    generic = _compact_json({"toRepairDataArray": [r.model_dump() for r in records]})
    assert b'{"toRepairDataArray":%s}' % _RECORD_LIST.dump_json(records) == generic
    assert json.loads(generic)["toRepairDataArray"][1]["name"] == "阿卜杜·热合曼"
