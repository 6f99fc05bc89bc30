"""``FileRejected(reason)``: the whole file is refused (empty, unreadable, wrong columns, ...).

``reason`` is a short English sentence safe to store and show: it never quotes cell values.
"""

from __future__ import annotations


class FileRejected(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
