"""The carrier-owner audit contract (spec: shared/spec/carrier_audit.md).

These models describe the wire shape only; the business rules (check digits, plates, the
fields each ``usage`` requires) live in ``verifyfeed.rules.carrier_audit``.

The models of the upstream's requests and answers build their validators on first use
(``defer_build``): every function imports this module, only the splitter, the uploader and the
poller use them, and the callback, which needs a fast cold start, uses only ``AuditCallback``
and ``CallbackReply``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from verifyfeed.models.wire import WireInt

CALLBACK_SERVICE_NAME = "auditCarrierAudit"


class AuditUsage(StrEnum):
    DRIVER_RELATIVE = "1"  # 车老板为司机直系亲属
    AFFILIATED = "2"  # 挂靠车车老板收款
    NON_AFFILIATED = "3"  # 非挂靠车车老板收款


class UpstreamAuditStatus(IntEnum):
    PENDING = 0  # 审核中
    PASSED = 1  # 已通过
    REJECTED = 2  # 已驳回


class AuditParams(BaseModel):
    """The fields of ``/carrierAudit/add`` (and, with ``id``, of ``/update``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    usage: Literal["1", "2", "3"]
    name: str = Field(min_length=1, max_length=20)
    idCard: str = Field(min_length=18, max_length=18)
    phone: str = Field(min_length=1, max_length=20)
    idCardFrontFilename: str | None = Field(default=None, max_length=255)
    idCardBackFilename: str | None = Field(default=None, max_length=255)
    driverName: str | None = Field(default=None, max_length=20)
    driverIdCard: str | None = Field(default=None, max_length=18)
    driverIdCardFrontFilename: str | None = Field(default=None, max_length=255)
    driverIdCardBackFilename: str | None = Field(default=None, max_length=255)
    carLicensePlate: str | None = None
    drivingLicenseFilename: str | None = Field(default=None, max_length=255)
    attachmentFileUrls: str | None = None


AUDIT_FIELDS: tuple[str, ...] = tuple(AuditParams.model_fields)  # the seed's request table, in order
AUDIT_REQUIRED: tuple[str, ...] = tuple(n for n, f in AuditParams.model_fields.items() if f.is_required())
FILENAME_FIELDS: tuple[str, ...] = tuple(n for n in AUDIT_FIELDS if n.endswith("Filename"))


class AuditUpdateParams(AuditParams):
    id: int


class AuditGetParams(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: int


class AuditResult(BaseModel):
    """``data`` of ``/carrierAudit/get``: ``status`` a String in its table, a number in its mock."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: WireInt
    status: Annotated[WireInt, Field(ge=0, le=2)]
    remarks: str | None = None

    @property
    def upstream_status(self) -> UpstreamAuditStatus:
        return UpstreamAuditStatus(self.status)


class AuditCallback(BaseModel):
    """The callback body: strict where the seed is consistent, tolerant where it is not.

    ``id`` and ``status`` are read as numbers or numeric strings (the seeds disagree on their types;
    never booleans or floats), ``status`` must be 1 or 2; unknown extra fields are kept aside
    (``model_extra``) so the caller can log their names, and are otherwise ignored.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    serviceName: Literal["auditCarrierAudit"]
    apiId: str = Field(min_length=1, max_length=128)
    id: Annotated[WireInt, Field(ge=1)]
    status: Annotated[WireInt, Field(ge=1, le=2)]
    remarks: str | None = Field(default=None, max_length=2000)


class CallbackReply(BaseModel):
    code: str
    message: str
