"""Templates with one thing changed, for the tests that prove a check notices it."""

from __future__ import annotations

import copy
from typing import Any


def without_grant(template: dict[str, Any], role: str, sid: str, action: str | None = None) -> dict[str, Any]:
    """``template`` with ``action`` (or the whole statement ``sid``) taken out of ``role``'s policy."""
    changed = copy.deepcopy(template)
    document = changed["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
    kept = []
    for statement in document["Statement"]:
        if statement.get("Sid") == sid:
            assert action is None or action in statement["Action"], (sid, action)
            if action is None:
                continue
            statement["Action"] = [a for a in statement["Action"] if a != action]
        kept.append(statement)
    assert len(kept) < len(document["Statement"]) or action is not None
    document["Statement"] = kept
    return changed
