"""SQS → send each queued batch or audit upstream (logic: verifyfeed.logic.uploader).

Partial batch responses (``ReportBatchItemFailures``): a failed message is retried alone, after
the backoff the core asked for. Powertools idempotency makes a redelivered success free; the
core's send lease is what protects a charged call after a timeout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from verifyfeed import aws
from verifyfeed.logic.uploader import Delivery, RetryLater, handle
from verifyfeed.models.messages import WorkMessage
from verifyfeed.observability import logger, metrics, tracer
from verifyfeed.services import get_services

services = get_services()
settings = services.settings
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
messages: TypeAdapter[WorkMessage] = TypeAdapter(WorkMessage)
idempotency = IdempotencyConfig(expires_after_seconds=settings.idempotency_expiry_seconds)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=aws.dynamodb())
# a call must be able to finish (connect + read timeouts) before the Lambda's deadline
SAFETY_MS = int((settings.connect_timeout_s + settings.read_timeout_s + 5) * 1000)


@idempotent_function(  # type: ignore[untyped-decorator]  # Powertools ships it untyped
    data_keyword_argument="message", config=idempotency, persistence_store=persistence
)
def process(message: dict[str, Any], delivery: Delivery) -> str:
    return handle(services, messages.validate_python(message), delivery)


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < SAFETY_MS:
        raise RetryLater("not enough time left in this invocation", 0)  # never start a call we cannot finish
    work = messages.validate_json(record.body)
    logger.set_correlation_id(work.job_id)
    delivery = Delivery(
        receive_count=int(record.attributes.approximate_receive_count),
        max_receive_count=settings.queue_max_receive_count,
        seconds_left=(lambda: lambda_context.get_remaining_time_in_millis() / 1000)
        if lambda_context
        else None,
    )
    try:
        status: str = process(message=work.model_dump(mode="json"), delivery=delivery)
        return status
    except IdempotencyAlreadyInProgressError:
        _delay(record, 10)
        raise
    except RetryLater as exc:
        _delay(record, exc.delay_s)
        logger.info("will retry", extra={"reason": exc.reason, "delay_s": exc.delay_s})
        raise


def _delay(record: SQSRecord, seconds: int) -> None:
    aws.sqs().change_message_visibility(
        QueueUrl=settings.work_queue_url,
        ReceiptHandle=record.receipt_handle,
        VisibilityTimeout=max(0, seconds),
    )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
