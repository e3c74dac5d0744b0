"""The jobs ledger as people see it: one fold of ``<prefix>.jobs``, a job's summary,
and the retry request (``dicom-adapter jobs``, ``GET /jobs``, the ``/ui`` page).

Built by replaying ``<prefix>.jobs`` from the beginning with a group-less reader and
folding it with the submitter's own fold (:mod:`processors.submit.state`).
"""

from __future__ import annotations

import time
from typing import Any

from processors.submit.state import JobLedger, JobState, fold_log
from streams.events import JobRetryRequested, envelope
from streams.kafka import Connection, EventPublisher, read_topic


async def load_ledger(kafka: Connection, topic: str) -> JobLedger:
    """Read ``topic`` from the beginning and fold it."""
    return fold_log(await read_topic(kafka, topic))


async def request_retry(
    kafka: Connection, topic: str, job: JobState, *, requested_by: str, reason: str = ""
) -> None:
    """Write ``job.retry_requested`` with the job's key to the job's home partition
    (acks=all)."""
    record = JobRetryRequested(job.job_id, requested_by=requested_by, reason=reason)
    env = envelope(record, source="dicom-adapter-jobs", time_ms=int(time.time() * 1000))
    async with EventPublisher(kafka, client_id="dicom-adapter-jobs") as publisher:
        home = job.partition if job.partition >= 0 else None
        await publisher.publish(topic, job.key, env, partition=home)


def describe(job: JobState) -> str:
    """``submitted``, ``pending``, ``failed (retrying)`` or ``dead``."""
    return {"failed": "failed (retrying)"}.get(job.status, job.status)


def summary(job: JobState) -> dict[str, Any]:
    """The JSON fields of a job in ``jobs list --json`` (no instance list)."""
    return {
        "job_id": job.job_id,
        "state": job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "ae_title": job.ae_title,
        "pipeline_name": job.pipeline_name,
        "pipeline_id": job.pipeline_id,
        "name": job.name,
        "group_key": job.group_key,
        "instances": len(job.instances),
        "queued_at": job.queued_at or None,
        "submitted_at": job.submitted_at or None,
        "last_failed_at": job.last_failed_at or None,
        "retry_at": job.retry_at or None,
        "last_error": job.last_error or None,
        "platform_job_id": job.platform_job_id or None,
        "payload_uri": job.payload_uri or None,
        "retry_requests": job.retry_requests,
        "files_removed_at": job.files_removed_at or None,
        "first_received_at": job.first_received_at or None,
        "last_received_at": job.last_received_at or None,
    }
