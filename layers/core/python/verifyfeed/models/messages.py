"""Messages on the work queue: one lost-repair batch, or one carrier audit to submit."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.models.lost_repair import RepairRecord
from verifyfeed.models.records import Batch


class LostRepairBatchMessage(BaseModel):
    """A batch inline, or a pointer to it in S3 (claim check) when it would not fit in SQS."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["lost_repair_batch"] = "lost_repair_batch"
    job_id: str
    batch_id: str
    seq: int
    records: list[RepairRecord] | None = None
    claim_bucket: str | None = None
    claim_key: str | None = None
    generation: int = Field(0, description="bumped by each re-drive; part of the idempotency key")

    @classmethod
    def for_batch(
        cls, batch: Batch, *, generation: int = 0, claim_bucket: str = ""
    ) -> LostRepairBatchMessage:
        """The message of a batch whose body is in S3 (its claim check): a staged half of a refused batch,
        a deferred batch after the blackout, an operator's re-drive (a new ``generation``)."""
        return cls(
            job_id=batch.job_id,
            batch_id=batch.batch_id,
            seq=batch.seq,
            claim_bucket=batch.claim_bucket or claim_bucket,
            claim_key=batch.claim_key,
            generation=generation,
        )

    @model_validator(mode="after")
    def _inline_or_claim_check(self) -> LostRepairBatchMessage:
        if (self.records is None) == (self.claim_key is None):
            raise ValueError("a batch message carries either records or a claim_key")
        return self


class CarrierAuditMessage(BaseModel):
    """One audit to ``add`` (no ``record_id``) or ``update`` (the rejected record's id)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["carrier_audit"] = "carrier_audit"
    job_id: str
    audit_key: str
    row: int
    params: AuditParams
    update_record_id: int | None = None


WorkMessage = Annotated[LostRepairBatchMessage | CarrierAuditMessage, Field(discriminator="kind")]
