"""The seeds' own examples, read out of the spec text itself (``tests/contract/seeds/*.md``).

The two files are verbatim copies of ``../shared/spec/`` (``test_seeds_are_the_spec`` keeps them
so). Nothing here is retyped by hand: each JSON example is cut out of the document as printed —
the lost-repair page's ``<pre><code>`` blocks (HTML-escaped), the carrier-audit page's
"mock 数据示例" blocks — and each request table's level-1 field names are read from its rows. The
only edit is dropping the seeds' placeholder lines "(认证信息参数)" / "(统一响应参数)", which
stand for the envelope fields the linked (unavailable) page defines.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEEDS = Path(__file__).resolve().parent / "seeds"
LOST_REPAIR_MD = SEEDS / "lost_repair_upload_data.md"
CARRIER_AUDIT_MD = SEEDS / "carrier_audit.md"
SEED_SHA256 = {
    "carrier_audit.md": "35637a733d49fc9a07d0b8be521813f317531e7f9791e54fc3f81246844eb36d",
    "lost_repair_upload_data.md": "a89a3c03ab3dd7ebf126af226026e92bb0319cebf2e67a8ff54ea1b416430cd7",
}
PLACEHOLDERS = ("(认证信息参数)", "(统一响应参数)")


def _without_placeholders(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() not in PLACEHOLDERS)


@dataclass(frozen=True)
class LostRepairExamples:
    request: dict[str, Any]  # {"param": {...}} as printed (authinfo is a placeholder)
    success: dict[str, Any]  # {"data": {"state": "1", "desc": "成功"}}
    failure: dict[str, Any]  # {"data": {"state": "0", "desc": "失败"}}


def lost_repair_examples() -> LostRepairExamples:
    text = LOST_REPAIR_MD.read_text(encoding="utf-8")
    blocks = re.findall(r"<pre><code>(.*?)</code></pre>", text, flags=re.S)
    request, success, failure = (json.loads(_without_placeholders(html.unescape(b))) for b in blocks)
    return LostRepairExamples(request=request, success=success, failure=failure)


def _balanced_json(text: str, start: int) -> Any:
    """The JSON object that starts at the first "{" at or after ``start``."""
    begin = text.index("{", start)
    depth = 0
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return json.loads(text[begin : index + 1])
    raise ValueError("unbalanced example")


@dataclass(frozen=True)
class AuditSection:
    title: str  # the "接口名称" (interface name), or the section heading for the callback
    request_fields: list[str]  # level-1 English names, in the table's order
    mocks: list[Any]  # the "mock 数据示例" JSON examples, in order


def carrier_audit_sections() -> dict[str, AuditSection]:
    """Keyed by interface path ("/carrierAudit/add", …) and "callback"."""
    text = CARRIER_AUDIT_MD.read_text(encoding="utf-8")
    sections: dict[str, AuditSection] = {}
    for chunk in re.split(r"^# ", text, flags=re.M)[1:]:
        heading = chunk.splitlines()[0].strip()
        name = re.search(r"接口名称:(\S+)", chunk)
        key = name.group(1) if name and name.group(1).startswith("/") else "callback"
        request_part = chunk.split("返回参数", 1)[0]
        fields = re.findall(r"^\d+ \| 1 \| (\w+) \|", request_part, flags=re.M)
        mocks = [_balanced_json(chunk, m.end()) for m in re.finditer("mock 数据示例", chunk)]
        sections[key] = AuditSection(title=heading, request_fields=fields, mocks=mocks)
    return sections
