"""The one small interface between the submitter and a pipeline platform.

A platform client turns a :class:`PlatformJob` into a :class:`SubmitOutcome`:
``submitted`` (with the platform's own job id when it has one), ``retriable`` (try again
later: the platform is busy or unreachable) or ``permanent`` (the platform refused this
job; retrying the same request cannot help). Clients never raise for a platform answer,
and they never write events: the submitter does that (docs/submitters.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from streams.events import JobSubmitted

OutcomeKind = Literal["submitted", "retriable", "permanent"]


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What one submission attempt came to."""

    kind: OutcomeKind
    platform_job_id: str = ""
    error: str = ""
    retry_after_s: float = 0.0  # the platform's ``Retry-After``, a floor for the backoff

    @classmethod
    def submitted(cls, platform_job_id: str = "") -> SubmitOutcome:
        """The platform accepted the job."""
        return cls("submitted", platform_job_id=platform_job_id)

    @classmethod
    def retriable(cls, error: str, retry_after_s: float = 0.0) -> SubmitOutcome:
        """Not accepted now; the same request may succeed later."""
        return cls("retriable", error=error, retry_after_s=retry_after_s)

    @classmethod
    def permanent(cls, error: str) -> SubmitOutcome:
        """Refused; the same request will be refused again (dead-letter it)."""
        return cls("permanent", error=error)


@dataclass(frozen=True, slots=True)
class PlatformJob(JobSubmitted):
    """A job as handed to a platform: the ``job.submitted`` record it becomes once the
    platform accepts it (``platform_job_id`` is not known yet, so it stays empty).

    ``instances`` point into the payload folder (the received files are reclaimed once
    the job is submitted); ``job_id`` is deterministic and doubles as idempotency key.
    """

    def to_json(self) -> dict[str, Any]:
        """The JSON body an HTTP platform receives (docs/submitters.md)."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "ae_title": self.ae_title,
            "pipeline_name": self.pipeline_name,
            "pipeline_id": self.pipeline_id,
            "priority": self.priority,
            "payload_uri": self.payload_uri,
            "group_key": self.group_key,
            "attempt": self.attempt,
            "instances": [
                {
                    "sop_instance_uid": i.sop_instance_uid,
                    "study_instance_uid": i.study_instance_uid,
                    "series_instance_uid": i.series_instance_uid,
                    "uri": i.uri,
                }
                for i in self.instances
            ],
        }

    def submitted_event(self, platform_job_id: str = "") -> JobSubmitted:
        """The ``job.submitted`` record for this job once a platform accepted it."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(JobSubmitted)}
        return JobSubmitted(**fields | {"platform_job_id": platform_job_id})


@runtime_checkable
class PlatformClient(Protocol):
    """A pipeline platform. Create it inside the running event loop; close it once."""

    name: str

    async def submit(self, job: PlatformJob) -> SubmitOutcome:
        """Hand ``job`` over; never raises for the platform's answer or a network error."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
