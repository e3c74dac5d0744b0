"""The ``kafka`` platform: the ``job.submitted`` event on ``<prefix>.jobs`` is the hand-off.

A platform that consumes Kafka reads ``job.submitted`` (payload folder, pipeline id,
priority, instance list) itself, so "submitting" needs no call and always succeeds; the
submitter writes the event with ``acks=all`` before it commits, which is the delivery.
"""

from __future__ import annotations

from processors.submit.platform import PlatformJob, SubmitOutcome


class KafkaPlatform:
    """Hand-off through the jobs topic; the platform's job id is the adapter's job id."""

    name = "kafka"

    async def submit(self, job: PlatformJob) -> SubmitOutcome:
        """Always submitted: the outcome event itself delivers the job."""
        return SubmitOutcome.submitted(job.job_id)

    async def aclose(self) -> None:
        """Nothing to release."""
