"""API Gateway POST /callbacks/carrier-audit → verify the sign, apply the audit result
(logic: verifyfeed.logic.callback)."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from verifyfeed.logic.callback import handle_callback
from verifyfeed.observability import logger, metrics, tracer
from verifyfeed.services import get_services

services = get_services()
app = APIGatewayRestResolver()


def _raw_body() -> bytes:
    event = app.current_event
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")


@app.post("/callbacks/carrier-audit")
def carrier_audit_callback() -> Response[str]:
    result = handle_callback(services, _raw_body(), dict(app.current_event.headers or {}))
    metrics.add_metric(
        name="CallbacksAccepted" if result.accepted else "CallbacksRejected", unit=MetricUnit.Count, value=1
    )
    logger.info("callback handled", extra={"http_status": result.http_status, "reason": result.reason})
    return Response(
        status_code=result.http_status,
        content_type="application/json; charset=utf-8",
        body=result.reply.model_dump_json(),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
