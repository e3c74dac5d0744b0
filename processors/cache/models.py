"""The REST API's request and response bodies (pydantic), so the OpenAPI document is exact.

Times are ISO 8601 in UTC; sizes are bytes. Listings are pages: ``items``, ``total``
(items in the whole listing), ``limit``, ``offset`` and ``next_offset`` (``null`` on the
last page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from processors.cache.rows import Counts, Overview, PatientSummary, SeriesSummary, StudySummary
from streams.events import Priority

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_STUDIES = 1000
StudyUid = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def to_time(epoch_ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class ApiError(BaseModel):
    """Every error the cache API answers itself: what went wrong and how to fix it."""

    error: str = Field(description="one line: what is wrong and what to do")
    code: str = Field(
        description="unknown_ae_title | unknown_study | unknown_studies | invalid_request | "
        "conflict | unavailable"
    )
    unknown_studies: list[str] | None = Field(
        default=None, description="with code unknown_studies: the studies not in the cache"
    )


class BodyError(BaseModel):
    """FastAPI's own answer to a body it cannot read at all (e.g. not UTF-8)."""

    detail: str


class CacheOverview(BaseModel):
    """What one AE title's cache holds."""

    ae_title: str
    patients: int
    studies: int
    series: int
    instances: int
    size_bytes: int

    @classmethod
    def of(cls, ae_title: str, o: Overview) -> CacheOverview:
        """From the store's overview."""
        return cls(
            ae_title=ae_title,
            patients=o.patients,
            studies=o.studies,
            series=o.series,
            instances=o.instances,
            size_bytes=o.size,
        )


class _Counted(BaseModel):
    instances: int
    size_bytes: int
    first_received_at: datetime
    last_received_at: datetime


def _counted(counts: Counts) -> dict[str, Any]:
    """The :class:`_Counted` fields of the store's aggregates."""
    return {
        "instances": counts.instances,
        "size_bytes": counts.size,
        "first_received_at": to_time(counts.first_received_at),
        "last_received_at": to_time(counts.last_received_at),
    }


class PatientOut(_Counted):
    """A patient with cached instances."""

    patient_id: str
    studies: int
    series: int

    @classmethod
    def of(cls, p: PatientSummary) -> PatientOut:
        """From the store's row."""
        return cls(
            patient_id=p.patient_id, studies=p.studies, series=p.series, **_counted(p.counts)
        )


class StudyOut(_Counted):
    """A study with cached instances."""

    study_instance_uid: str
    patient_id: str
    series: int

    @classmethod
    def of(cls, s: StudySummary) -> StudyOut:
        """From the store's row."""
        return cls(
            study_instance_uid=s.study_instance_uid,
            patient_id=s.patient_id,
            series=s.series,
            **_counted(s.counts),
        )


class SeriesOut(_Counted):
    """A series with cached instances."""

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str

    @classmethod
    def of(cls, s: SeriesSummary) -> SeriesOut:
        """From the store's row."""
        return cls(
            series_instance_uid=s.series_instance_uid,
            study_instance_uid=s.study_instance_uid,
            patient_id=s.patient_id,
            **_counted(s.counts),
        )


class _Page(BaseModel):
    total: int = Field(description="items in the whole listing")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")


class PatientPage(_Page):
    """A page of cached patients, by PatientID."""

    items: list[PatientOut]


class StudyPage(_Page):
    """A page of cached studies, by Study Instance UID."""

    items: list[StudyOut]


class SeriesPage(_Page):
    """A page of cached series, by Series Instance UID."""

    items: list[SeriesOut]


class StudyDetailOut(BaseModel):
    """One cached study and each of its series."""

    study: StudyOut
    series: list[SeriesOut]


class JobRequest(BaseModel):
    """``POST /cache/{ae_title}/jobs``: one job with every cached instance of ``studies``.

    The pipeline is ``pipeline_id``, or ``pipeline`` naming a ``pipeline-<name>`` setting
    of the AE title, or (neither given) the AE title's only configured pipeline.
    """

    model_config = ConfigDict(extra="forbid")

    studies: list[StudyUid] = Field(min_length=1, max_length=MAX_STUDIES)
    pipeline_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    pipeline: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    priority: Priority | None = Field(
        default=None, description="default: the AE title's priority setting"
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="job name (made a valid name as Clara's FixJobName does); "
        "default <ae>-<pipeline>-<UTC time>",
    )


class JobOut(BaseModel):
    """The job on the ledger; the submitter hands it to the platform."""

    job_id: str
    name: str
    pipeline_name: str
    pipeline_id: str
    priority: Priority
    studies: list[str]
    instances: int


class ReleasedOut(BaseModel):
    """A study released without a job; the reclaimer deletes its files."""

    study_instance_uid: str
    instances: int
    request_id: str
