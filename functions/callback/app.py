"""API Gateway POST /callbacks/carrier-audit → verify the sign, apply the audit result
(logic: verifyfeed.logic.callback)."""

# ruff: noqa: E402 (the imports come after pausing the garbage collector)
from __future__ import annotations

import gc

# The collector is paused while this module loads and what it loaded is then frozen: about 40 ms
# less cold start (docs/performance.md#callback).
_GC_WAS_ENABLED = gc.isenabled()
gc.disable()

import base64
import binascii
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from verifyfeed.logic.callback import FAILURE_CODE, CallbackResult, handle_callback
from verifyfeed.models.carrier_audit import CallbackReply
from verifyfeed.observability import logger, metrics, tracer
from verifyfeed.services import get_services

services = get_services()
app = APIGatewayRestResolver()


def _raw_body() -> bytes | None:
    """The body as sent; ``None`` when the event says base64 and it is not."""
    event = app.current_event
    body = event.body or ""
    if not event.is_base64_encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        return None


@app.post("/callbacks/carrier-audit")
def carrier_audit_callback() -> Response[str]:
    raw = _raw_body()
    if raw is None:
        reply = CallbackReply(code=FAILURE_CODE, message="body is not valid base64")
        result = CallbackResult(400, reply, "schema")
    else:
        result = handle_callback(services, raw, dict(app.current_event.headers or {}))
    if result.record_id is not None:
        logger.set_correlation_id(str(result.record_id))  # the audit's upstream record id
    count_callback(result)
    logger.info("callback handled", extra={"http_status": result.http_status, "reason": result.reason})
    return Response(
        status_code=result.http_status,
        content_type="application/json; charset=utf-8",
        body=result.reply.model_dump_json(),
    )


def count_callback(result: CallbackResult) -> None:
    """CallbacksAccepted / CallbacksRejected twice: the total (what the alarm watches) and by reason."""
    name = "CallbacksAccepted" if result.accepted else "CallbacksRejected"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    with single_metric(name=name, unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="reason", value=result.reason)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


gc.freeze()  # everything loaded above lives as long as the sandbox (see the top)
if _GC_WAS_ENABLED:
    gc.enable()
