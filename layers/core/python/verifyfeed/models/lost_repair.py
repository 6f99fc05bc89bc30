"""The ``lost_repair_upload_data`` contract (spec: shared/spec/lost_repair_upload_data.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from verifyfeed.models.envelope import AuthInfo
from verifyfeed.models.wire import WireInt

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
AuthCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,16}$")]
MAX_BATCH = 1000
MAX_NAME_CHARS = 30


class RepairRow(BaseModel):
    """The columns of a dropped lost-repair file, each the source of a ``RepairRecord`` field: the
    name as is, the ID and phone numbers hashed, the authCode as written. The splitter's header
    mapping (``ingest.headers``) and the samples read the field list from here."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str  # → name
    id_number: str  # → idcode: SHA-256 of the upper-cased number
    used_phone: str = ""  # → usedPhone: SHA-256 of the 11 digits, or ""
    auth_code: str  # → authCode


class RepairRecord(BaseModel):
    """One person to repair: plain name, SHA-256 of the upper-cased ID, optional SHA-256 of a phone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
    idcode: Sha256Hex
    usedPhone: Sha256Hex | Literal[""] = ""
    authCode: AuthCode


class LostRepairParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toRepairDataArray: list[RepairRecord] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _unique_per_batch(self) -> LostRepairParam:
        # Upstream silently drops later duplicates; we never send any, so a duplicate here is a bug.
        records = self.toRepairDataArray
        if len({r.idcode for r in records}) != len(records):
            raise ValueError("idcode repeated within a batch")
        if len({r.authCode for r in records}) != len(records):
            raise ValueError("authCode repeated within a batch")
        return self


class LostRepairRequest(BaseModel):
    authinfo: AuthInfo
    param: LostRepairParam


class VerifyState(BaseModel):
    """``data`` of the reply: ``state`` "1" = success (charged), "0" = failure (not charged).

    The spec types ``state`` as a string; a number (``1``) is read the same. Any other value is
    not a state we can read (and, after a success code, an ambiguous answer: held, never resent).
    """

    model_config = ConfigDict(extra="allow")

    state: Annotated[WireInt, Field(ge=0, le=1)]
    desc: str = ""

    @property
    def charged(self) -> bool:
        return self.state == 1
