"""The uploader's use case: one work message from the queue → its lost-repair batch
(``batch_upload``) or its carrier audit (``audit_submission``), each sent upstream at most once."""

from __future__ import annotations

from verifyfeed.logic.audit_submission import submit_audit
from verifyfeed.logic.batch_upload import SettleFailed, load_records, upload_batch
from verifyfeed.logic.delivery import Delivery, RetryLater
from verifyfeed.models.messages import LostRepairBatchMessage, WorkMessage
from verifyfeed.ports import Services

__all__ = ["Delivery", "RetryLater", "SettleFailed", "handle", "load_records", "submit_audit", "upload_batch"]


def handle(services: Services, work: WorkMessage, delivery: Delivery) -> str:
    """Send the message's batch or audit; returns the status it left it in (``RetryLater``: come back)."""
    if isinstance(work, LostRepairBatchMessage):
        return upload_batch(services, work, delivery)
    return submit_audit(services, work, delivery)
