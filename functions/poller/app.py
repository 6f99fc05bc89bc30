"""EventBridge schedule → settle pending audits via /carrierAudit/get and re-drive deferred
batches (logic: verifyfeed.logic.poller)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from verifyfeed.logic.poller import poll
from verifyfeed.observability import logger, metrics, tracer
from verifyfeed.services import get_services

services = get_services()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = poll(services, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000)
    metrics.add_metric(name="AuditsPending", unit=MetricUnit.Count, value=report.audits_pending)
    metrics.add_metric(name="AuditsUnknown", unit=MetricUnit.Count, value=report.audits_unknown)
    metrics.add_metric(name="JobsStuck", unit=MetricUnit.Count, value=report.jobs_stuck)
    metrics.add_metric(name="PollerErrors", unit=MetricUnit.Count, value=report.audit_errors)
    metrics.add_metric(name="BatchesRedriven", unit=MetricUnit.Count, value=report.batches_redriven)
    return report.__dict__
