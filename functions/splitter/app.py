"""S3 ObjectCreated → split the file into upstream work (logic: verifyfeed.logic.splitter)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from verifyfeed.logic.splitter import DroppedObject, SplitOutcome, split_object
from verifyfeed.observability import logger, metrics, tracer
from verifyfeed.services import get_services

services = get_services()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.get("Records", []):
        dropped = DroppedObject.from_event_record(record)
        logger.set_correlation_id(dropped.job_id)
        logger.append_keys(job_id=dropped.job_id)
        result = split_object(services, dropped)
        if result.record_metrics:  # once a file: not for the same event again, nor a run taken over
            metrics.add_metric(name="RowsAccepted", unit=MetricUnit.Count, value=result.counts.rows_accepted)
            metrics.add_metric(name="RowsRejected", unit=MetricUnit.Count, value=result.counts.rows_rejected)
        if result.outcome == SplitOutcome.REJECTED:
            metrics.add_metric(name="FilesRejected", unit=MetricUnit.Count, value=1)
        results.append(
            {"job_id": result.job_id, "outcome": result.outcome.value, **result.counts.model_dump()}
        )
    return {"jobs": results}
