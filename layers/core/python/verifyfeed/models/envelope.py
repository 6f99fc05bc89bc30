"""The request and response envelopes shared by both upstream APIs.

The spec links the ``authinfo`` fields and the "unified response" to a page we do not have;
what we chose is in docs/decisions.md#authinfo and #unified-response.

Both models build their validators on first use (``defer_build``): the callback imports this
module (for ``SUCCESS_CODE``, and through ``verifyfeed.secrets``) but never calls the upstream.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SUCCESS_CODE = "00000"


class AuthInfo(BaseModel):
    """``authinfo``: who calls, when, and a signature proving it (HMAC scheme by default)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    apiId: str = Field(min_length=1)
    timestamp: str
    nonce: str
    sign: str


class UnifiedResponse(BaseModel):
    """``{"code", "message", "data", "serialNo"}``; ``serialNo`` is the platform serial number."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    code: str
    message: str = ""
    data: Any = None
    serialNo: str | None = Field(default=None, validation_alias="serialNo")

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS_CODE

    def scalars(self) -> dict[str, str | int | float | bool | None]:
        """Every top-level scalar field of the answer but ``data``, whatever it is called: the
        platform serial number survives even if the unified response names it otherwise.
        (Lists and objects are left out; strings are cut at 200 characters.)"""
        fields: dict[str, str | int | float | bool | None] = {
            "code": self.code,
            "message": self.message,
            "serialNo": self.serialNo,
        }
        for name, value in (self.model_extra or {}).items():
            if value is None or isinstance(value, bool | int | float | str):
                fields[name] = value
        return {k: v[:200] if isinstance(v, str) else v for k, v in fields.items()}
