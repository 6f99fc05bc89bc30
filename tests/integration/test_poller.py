"""The poller never strands and never starves (docs/decisions.md#poller).

Audits are polled against an audits table of the test's own (the session's table holds other
tests' pending audits, which the poller would poll too) and the sandbox on its manual clock: an
audit is pending upstream until a test advances that clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import boto3
import pytest

from sandbox.server import SandboxHandle
from tests.integration.conftest import SettingsFactory, drain_queue, fresh_audits_table
from tests.integration.test_audit_submission import queued_audit
from tests.integration.test_uploader import charged, message_for
from verifyfeed.clock import FixedClock
from verifyfeed.logic.poller import poll
from verifyfeed.logic.uploader import Delivery, submit_audit, upload_batch
from verifyfeed.models.messages import LostRepairBatchMessage
from verifyfeed.models.records import AuditStatus, BatchStatus
from verifyfeed.services import Services, build_services
from verifyfeed.store.queue import SqsWorkQueue

pytestmark = pytest.mark.integration


class WorkerKilled(BaseException):
    """The poller's process died here."""


@pytest.fixture
def own_audits(
    make_settings: SettingsFactory, clock: FixedClock, sandbox: SandboxHandle
) -> Iterator[Services]:
    """Services whose audits table is a fresh copy of the template's (same keys and indexes), on the
    session's sandbox reset to ``NOW`` (``sandbox``), not as the test before left it."""
    table = fresh_audits_table(make_settings().audits_table)
    yield build_services(make_settings(AUDITS_TABLE=table, POLL_PENDING_AGE_SECONDS="0"), clock)
    boto3.client("dynamodb").delete_table(TableName=table)


def pending_audits(services: Services, count: int) -> list[str]:
    keys = []
    for _ in range(count):
        message = queued_audit(services)
        assert submit_audit(services, message, Delivery()) == "pending"
        keys.append(message.audit_key)
    return keys


def gets(sandbox: SandboxHandle) -> list[int]:
    return [e.audit_id for e in sandbox.ledger() if e.endpoint == "/carrierAudit/get"]


def test_the_least_recently_polled_go_first(
    own_audits: Services, sandbox: SandboxHandle, clock: FixedClock, make_settings: SettingsFactory
) -> None:
    """With room for two a run, the third pending audit is polled by the second run, not never."""
    keys = pending_audits(own_audits, 3)
    ids = [own_audits.audits.get(k).record_id for k in keys]  # type: ignore[union-attr]
    services = build_services(
        make_settings(
            AUDITS_TABLE=own_audits.settings.audits_table, POLL_PENDING_AGE_SECONDS="0", POLL_MAX_ITEMS="2"
        ),
        clock,
    )
    clock.move_to(clock.now() + timedelta(seconds=1))
    first = poll(services)
    assert first.audits_checked == 2 and first.outcomes == {"still_pending": 2}
    clock.move_to(clock.now() + timedelta(seconds=1))
    second = poll(services)
    assert second.audits_checked == 2
    polled = gets(sandbox)
    assert len(polled) == 4 and set(polled[:2]) | {polled[2]} == set(ids)  # the one left out goes first
    audit = services.audits.get(keys[0])
    assert audit is not None and audit.polls >= 1 and audit.poll_error == ""


def test_an_unreadable_answer_is_that_audits_and_the_run_goes_on(
    own_audits: Services, sandbox: SandboxHandle, clock: FixedClock
) -> None:
    keys = pending_audits(own_audits, 2)
    sandbox.advance(1)  # upstream decides both (no callback URL: nobody is told)
    sandbox.set_faults({"endpoint": "audit_get", "invalid_json": True, "count": 1})
    clock.move_to(clock.now() + timedelta(seconds=1))
    report = poll(own_audits)
    assert report.audits_checked == 2 and report.audit_errors == 1 and report.audits_settled == 1
    statuses = sorted(own_audits.audits.get(k).status.value for k in keys)  # type: ignore[union-attr]
    assert statuses == ["passed", "pending"]
    [still] = [a for a in (own_audits.audits.get(k) for k in keys) if a and a.status == AuditStatus.PENDING]
    assert still.polls == 1 and "not the JSON envelope" in still.poll_error
    clock.move_to(clock.now() + timedelta(seconds=1))
    assert poll(own_audits).audits_settled == 1  # the next run settles it


def test_a_run_stops_while_the_lambda_still_has_time(own_audits: Services, clock: FixedClock) -> None:
    pending_audits(own_audits, 2)
    clock.move_to(clock.now() + timedelta(seconds=1))
    report = poll(own_audits, seconds_left=lambda: 3.0)  # less than one upstream call may take
    assert report.stopped_early and report.audits_checked == 0


def test_a_poller_that_dies_sending_leaves_the_batch_deferred_and_listed(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """The message is sent before the batch leaves ``deferred``: a run that dies in between strands
    nothing, the next run re-drives it, and upstream is paid once."""

    queue_url = services.settings.work_queue_url
    drain_queue(queue_url)
    clock.move_to(datetime.fromisoformat("2026-12-27T00:00:00+08:00"))
    sandbox.set_clock("2026-12-27T00:00:00+08:00")
    message = message_for(services, 2)
    assert upload_batch(services, message, Delivery()) == "deferred"
    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))
    sandbox.set_clock("2027-01-01T00:00:01+08:00")

    class DiesSending(SqsWorkQueue):
        def send(self, body: str) -> None:
            raise WorkerKilled("poller killed while re-driving")

    services.queue = DiesSending(queue_url)  # through Services, as the poller reaches SQS
    with pytest.raises(WorkerKilled):
        poll(services)
    services.queue = SqsWorkQueue(queue_url)
    batch = services.jobs.get_batch(message.job_id, 1)
    assert batch is not None and batch.status == BatchStatus.DEFERRED  # still listed, not stranded
    assert message.batch_id in {b.batch_id for b in services.jobs.batches_with_status(BatchStatus.DEFERRED)}

    assert poll(services).batches_redriven >= 1
    [again] = [m for m in drain_queue(queue_url) if m.get("batch_id") == message.batch_id]
    assert upload_batch(services, LostRepairBatchMessage.model_validate(again), Delivery()) == "succeeded"
    assert len(charged(sandbox)) == 2


def test_deferred_batches_are_redriven_before_audits_are_polled(
    services: Services, clock: FixedClock, sandbox: SandboxHandle
) -> None:
    """A run with no time for audits still re-drives what the blackout held."""
    drain_queue(services.settings.work_queue_url)
    clock.move_to(datetime.fromisoformat("2026-12-27T00:00:00+08:00"))
    sandbox.set_clock("2026-12-27T00:00:00+08:00")
    message = message_for(services, 1)
    assert upload_batch(services, message, Delivery()) == "deferred"
    pending_audits(services, 1)  # something for the audit loop to do
    clock.move_to(datetime.fromisoformat("2027-01-01T00:00:01+08:00"))

    def seconds_left() -> float:  # time enough while our batch waits to be re-driven, none after
        batch = services.jobs.get_batch(message.job_id, 1)
        return 1000.0 if batch is not None and batch.status == BatchStatus.DEFERRED else 1.0

    report = poll(services, seconds_left=seconds_left)
    assert report.batches_redriven >= 1 and report.audits_checked == 0 and report.stopped_early
