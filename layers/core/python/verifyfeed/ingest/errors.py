"""``FileRejected(code, **params)``: the whole file is refused (empty, not a spreadsheet, wrong
columns, ...).

``why`` is the catalogued ``Reason`` (``verifyfeed/reasons.py``): ``code``, ``reason`` — its English
text, what the job record and the logs keep — and ``zh``, its Chinese one. No text quotes a cell
value.
"""

from __future__ import annotations

from verifyfeed.reasons import Param, Reason


class FileRejected(ValueError):
    def __init__(self, code: str, **params: Param) -> None:
        self.why = Reason(code, tuple(params.items()))
        super().__init__(self.why.en)

    @classmethod
    def of(cls, why: Reason) -> FileRejected:
        return cls(why.code, **dict(why.params))

    @property
    def code(self) -> str:
        return self.why.code

    @property
    def reason(self) -> str:
        return self.why.en

    @property
    def zh(self) -> str:
        return self.why.zh
