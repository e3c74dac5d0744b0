"""What a job or removal request of the cache asks for, checked (pure; no I/O).

Errors say which of the request's values is wrong and how to fix it; the REST API maps
each class to one HTTP status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from processors.cache.settings import CacheSettings
from streams.errors import AdapterError
from streams.events import Priority


class CacheRequestError(AdapterError):
    """A request the cache cannot carry out; ``code`` names the reason for clients."""

    code = "bad_request"


class InvalidRequestError(CacheRequestError):
    """The request contradicts the configuration or is malformed (HTTP 400)."""

    code = "invalid_request"


class UnknownAeTitleError(CacheRequestError):
    """No cache processor serves the AE title (HTTP 404)."""

    code = "unknown_ae_title"


class UnknownStudiesError(CacheRequestError):
    """Some requested studies have no cached instance (HTTP 404)."""

    code = "unknown_studies"

    def __init__(self, message: str, unknown: Sequence[str]) -> None:
        super().__init__(message)
        self.unknown = tuple(unknown)


class ClaimedError(CacheRequestError):
    """The instances were taken by another request meanwhile (HTTP 409)."""

    code = "conflict"


class UnavailableError(CacheRequestError):
    """The cache cannot act now (ledger not acknowledging, processor stopped; HTTP 503).

    Nothing was submitted or deleted; the same request may be sent again.
    """

    code = "unavailable"
    retriable = True


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The pipeline a job runs: its configured name (if any) and its id."""

    name: str
    pipeline_id: str


@dataclass(frozen=True, slots=True)
class SubmittedJob:
    """What ``POST /cache/<ae>/jobs`` answers: the job now on the ledger."""

    job_id: str
    name: str
    pipeline_name: str
    pipeline_id: str
    priority: Priority
    studies: tuple[str, ...]
    instances: int


@dataclass(frozen=True, slots=True)
class ReleasedStudy:
    """What ``DELETE /cache/<ae>/studies/<uid>`` answers: the removal on the ledger."""

    study_instance_uid: str
    instances: int
    request_id: str


def resolve_pipeline(
    ae_title: str, settings: CacheSettings, name: str | None, pipeline_id: str | None
) -> Pipeline:
    """The pipeline of a request: ``pipeline`` (a configured name) or ``pipeline_id``, or
    the only configured pipeline when the request names neither."""
    configured = ", ".join(n for n, _ in settings.pipelines) or "none"
    if name is not None and pipeline_id is not None:
        raise InvalidRequestError("give either 'pipeline' (a configured name) or 'pipeline_id'")
    if name is not None:
        found = settings.pipeline_id(name)
        if found is None:
            raise InvalidRequestError(
                f"AE title {ae_title} has no pipeline named {name!r} (configured: {configured}); "
                "use a configured name or give 'pipeline_id'"
            )
        return Pipeline(name, found)
    if pipeline_id is not None:
        if not pipeline_id.strip():
            raise InvalidRequestError("'pipeline_id' is blank; give the pipeline's id")
        known = {pid: n for n, pid in settings.pipelines}
        return Pipeline(known.get(pipeline_id.strip(), ""), pipeline_id.strip())
    if len(settings.pipelines) == 1:
        return Pipeline(*settings.pipelines[0])
    raise InvalidRequestError(
        f"say which pipeline to run: 'pipeline_id', or 'pipeline' naming one of the "
        f"pipeline-<name> settings of AE title {ae_title} (configured: {configured})"
    )


def unique_studies(studies: Sequence[str]) -> tuple[str, ...]:
    """Study UIDs without padding, blanks rejected, duplicates dropped (first kept)."""
    cleaned: list[str] = []
    for uid in studies:
        value = uid.strip(" \x00")
        if not value:
            raise InvalidRequestError("'studies' holds a blank Study Instance UID; remove it")
        if value not in cleaned:
            cleaned.append(value)
    if not cleaned:
        raise InvalidRequestError("'studies' is empty; list at least one Study Instance UID")
    return tuple(cleaned)


def group_key(studies: Sequence[str]) -> str:
    """The ``group_key`` of a job of ``studies``: the UID of a single study, else a short
    digest of the sorted UIDs (so the same request always yields the same job id)."""
    if len(studies) == 1:
        return studies[0]
    digest = hashlib.sha256("\n".join(sorted(studies)).encode()).hexdigest()[:16]
    return f"{len(studies)}-studies-{digest}"
