"""Job completion: when the last batch of a job settles, fix its status and write its report."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from verifyfeed.logic.reports import ReportPaths, record_outcomes, refused_records, write_summary
from verifyfeed.models.records import JobKind, JobStatus
from verifyfeed.ports import Services

logger = Logger(child=True)
_OPEN = {JobStatus.UPLOADING, JobStatus.DEFERRED}


def settle_job(services: Services, job_id: str) -> JobStatus | None:
    """Re-derive the job's status from its counters; the writer that closes the job writes the report."""
    jobs = services.jobs
    job = jobs.get_job(job_id)
    if job is None or job.status not in _OPEN:
        return None
    now = services.clock.now()
    unsettled = job.batches_total - job.batches_settled
    if unsettled <= 0:
        final = (
            JobStatus.COMPLETED
            if job.batches_failed == 0 and job.batches_unknown == 0
            else JobStatus.COMPLETED_WITH_ERRORS
        )
        if jobs.set_job_status(job_id, final, _OPEN, now):
            closed = jobs.get_job(job_id)
            assert closed is not None
            paths = ReportPaths.for_job(closed, services.settings.reports_prefix)
            extra: dict[str, object] = {**paths.files(closed.kind)}
            if closed.kind == JobKind.LOST_REPAIR:
                batches = list(jobs.batches(job_id))
                # every accepted row: uploaded, refused by the upstream, or held (docs/decisions.md#state-0)
                extra["records"] = {"accepted": closed.rows_accepted, **record_outcomes(batches)}
                extra["refused_records"] = refused_records(batches)
                extra["batches"] = [
                    b.model_dump(
                        include={
                            "batch_id",
                            "status",
                            "record_count",
                            "attempts",
                            "serial_no",
                            "upstream_envelope",
                            "upstream_code",
                            "upstream_desc",
                            "last_error",
                            "parent_seq",
                            "refused_record",
                        },
                        mode="json",
                    )
                    for b in batches
                ]
            write_summary(services.blobs, closed.bucket, paths, closed, extra)
            jobs.set_report_key(job_id, paths.summary)  # a job written before has none until now
            logger.info("job settled", extra={"job_id": job_id, "status": final.value})
            return final
        return None
    if job.batches_deferred >= unsettled and job.status == JobStatus.UPLOADING:
        jobs.set_job_status(job_id, JobStatus.DEFERRED, {JobStatus.UPLOADING}, now)
        return JobStatus.DEFERRED
    if job.batches_deferred < unsettled and job.status == JobStatus.DEFERRED:
        jobs.set_job_status(job_id, JobStatus.UPLOADING, {JobStatus.DEFERRED}, now)
        return JobStatus.UPLOADING
    return job.status
