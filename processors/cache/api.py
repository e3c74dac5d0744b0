"""The cache processor's REST API, mounted by the runtime on the process's HTTP app.

    GET    /cache                                  every cache AE title, with counts
    GET    /cache/{ae_title}/patients              cached patients (paged)
    GET    /cache/{ae_title}/studies[?patient_id]  cached studies (paged)
    GET    /cache/{ae_title}/series[?study_uid]    cached series (paged)
    GET    /cache/{ae_title}/studies/{study_uid}   one study with its series
    POST   /cache/{ae_title}/jobs                  submit a job of studies -> 201
    DELETE /cache/{ae_title}/studies/{study_uid}   release a study without a job -> 202

Errors are :class:`~processors.cache.models.ApiError` bodies (404 unknown AE title or
study, 400 invalid request, 409 conflict, 503 ledger unavailable); malformed bodies and
parameters get FastAPI's 422. A failed request changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from processors.base import JobProcessor
from processors.cache.models import (
    MAX_LIMIT,
    MAX_OFFSET,
    ApiError,
    BodyError,
    CacheOverview,
    JobOut,
    JobRequest,
    PatientOut,
    PatientPage,
    ReleasedOut,
    SeriesOut,
    SeriesPage,
    StudyDetailOut,
    StudyOut,
    StudyPage,
)
from processors.cache.processor import CacheProcessor
from processors.cache.requests import (
    CacheRequestError,
    ClaimedError,
    InvalidRequestError,
    UnavailableError,
    UnknownAeTitleError,
    UnknownStudiesError,
)
from processors.cache.rows import Page

PREFIX = "/cache"
_STATUS: dict[type[CacheRequestError], int] = {
    InvalidRequestError: status.HTTP_400_BAD_REQUEST,
    UnknownAeTitleError: status.HTTP_404_NOT_FOUND,
    UnknownStudiesError: status.HTTP_404_NOT_FOUND,
    ClaimedError: status.HTTP_409_CONFLICT,
    UnavailableError: status.HTTP_503_SERVICE_UNAVAILABLE,
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ApiError, "description": "unknown AE title or study"},
    503: {"model": ApiError, "description": "the cache is stopped or the ledger unavailable"},
}

AeTitle = Annotated[str, Path(description="a called AE title served by the cache processor")]
StudyUid = Annotated[str, Path(description="Study Instance UID")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]


def error_response(exc: CacheRequestError) -> JSONResponse:
    """The JSON error answer of a failed request."""
    code = next((c for t, c in _STATUS.items() if isinstance(exc, t)), 400)
    body = ApiError(
        error=str(exc),
        code=exc.code,
        unknown_studies=list(exc.unknown) if isinstance(exc, UnknownStudiesError) else None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=code)


def _served(processors: Mapping[str, JobProcessor]) -> dict[str, CacheProcessor]:
    return {ae: p for ae, p in processors.items() if isinstance(p, CacheProcessor)}


def _next(offset: int, limit: int, shown: int, total: int) -> int | None:
    return offset + shown if shown and offset + shown < total else None


PageT = TypeVar("PageT", PatientPage, StudyPage, SeriesPage)


def _page(
    page_type: type[PageT],
    item: Callable[[Any], Any],
    rows: Callable[[], Page[Any]],
    limit: int,
    offset: int,
) -> PageT | JSONResponse:
    """One page of a listing (``rows`` read from the store, each made an ``item``), or
    the error response of a failed read."""
    try:
        page = rows()
    except CacheRequestError as exc:
        return error_response(exc)
    return page_type(
        items=[item(row) for row in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
        next_offset=_next(offset, limit, len(page.items), page.total),
    )


def create_router(processors: Mapping[str, JobProcessor]) -> APIRouter:
    """The API over the cache processors in ``processors`` (by AE title; a live mapping)."""
    router = APIRouter(prefix=PREFIX, tags=["cache"], responses=_ERRORS)

    def cache(ae_title: str) -> CacheProcessor:
        found = processors.get(ae_title)
        if not isinstance(found, CacheProcessor):
            served = ", ".join(sorted(_served(processors)))
            raise UnknownAeTitleError(
                f"AE title {ae_title!r} is not served by the cache processor here "
                f"(served: {served or 'none'}); AE titles are case-sensitive"
            )
        return found

    @router.get("", response_model=list[CacheOverview], summary="Cache AE titles")
    async def list_caches() -> list[CacheOverview] | JSONResponse:
        """Every AE title served by the cache processor, with what its cache holds."""
        try:
            return [
                CacheOverview.of(ae, p.store.overview())
                for ae, p in sorted(_served(processors).items())
            ]
        except CacheRequestError as exc:
            return error_response(exc)

    @router.get("/{ae_title}/patients", response_model=PatientPage, summary="Cached patients")
    async def list_patients(
        ae_title: AeTitle, limit: Limit = 100, offset: Offset = 0
    ) -> PatientPage | JSONResponse:
        """Patients with cached instances, by PatientID, with counts and times."""
        return _page(
            PatientPage, PatientOut.of, lambda: cache(ae_title).store.patients(limit, offset),
            limit, offset,
        )  # fmt: skip

    @router.get("/{ae_title}/studies", response_model=StudyPage, summary="Cached studies")
    async def list_studies(
        ae_title: AeTitle,
        limit: Limit = 100,
        offset: Offset = 0,
        patient_id: Annotated[str | None, Query(description="only this patient's")] = None,
    ) -> StudyPage | JSONResponse:
        """Studies with cached instances, by Study Instance UID, with counts and times."""
        return _page(
            StudyPage, StudyOut.of,
            lambda: cache(ae_title).store.studies(limit, offset, patient_id), limit, offset,
        )  # fmt: skip

    @router.get("/{ae_title}/series", response_model=SeriesPage, summary="Cached series")
    async def list_series(
        ae_title: AeTitle,
        limit: Limit = 100,
        offset: Offset = 0,
        study_uid: Annotated[str | None, Query(description="only this study's")] = None,
    ) -> SeriesPage | JSONResponse:
        """Series with cached instances, by Series Instance UID, with counts and times."""
        return _page(
            SeriesPage, SeriesOut.of,
            lambda: cache(ae_title).store.series(limit, offset, study_uid), limit, offset,
        )  # fmt: skip

    @router.get(
        "/{ae_title}/studies/{study_uid}", response_model=StudyDetailOut, summary="One study"
    )
    async def show_study(ae_title: AeTitle, study_uid: StudyUid) -> StudyDetailOut | JSONResponse:
        """A cached study and each of its series."""
        try:
            detail = cache(ae_title).store.study(study_uid)
            if detail is None:
                raise UnknownStudiesError(
                    f"AE title {ae_title} has no cached instances of study {study_uid}",
                    [study_uid],
                )
        except CacheRequestError as exc:
            return error_response(exc)
        return StudyDetailOut(
            study=StudyOut.of(detail.study), series=[SeriesOut.of(s) for s in detail.series]
        )

    @router.post(
        "/{ae_title}/jobs",
        response_model=JobOut,
        status_code=status.HTTP_201_CREATED,
        summary="Submit a job of cached studies",
        responses={
            400: {
                "model": ApiError | BodyError,
                "description": "the request contradicts the settings (ApiError), or the "
                "body cannot be read at all (FastAPI's {detail})",
            },
            409: {"model": ApiError, "description": "the instances were taken meanwhile"},
        },
    )
    async def submit_job(ae_title: AeTitle, request: JobRequest) -> JobOut | JSONResponse:
        """Submit one job with every cached instance of the studies, then release them.

        The job goes on the jobs ledger (a ``group.closed`` with one job), the submitter
        hands it to the platform, and the reclaimer deletes the files once it is
        submitted. Nothing changes when the request fails.
        """
        try:
            job = await cache(ae_title).submit_studies(
                request.studies,
                pipeline=request.pipeline,
                pipeline_id=request.pipeline_id,
                priority=request.priority,
                name=request.name,
            )
        except CacheRequestError as exc:
            return error_response(exc)
        return JobOut(
            job_id=job.job_id, name=job.name, pipeline_name=job.pipeline_name,
            pipeline_id=job.pipeline_id, priority=job.priority, studies=list(job.studies),
            instances=job.instances,
        )  # fmt: skip

    @router.delete(
        "/{ae_title}/studies/{study_uid}",
        response_model=ReleasedOut,
        status_code=status.HTTP_202_ACCEPTED,
        summary="Release a study without a job",
        responses={409: {"model": ApiError, "description": "the instances were taken meanwhile"}},
    )
    async def release_study(ae_title: AeTitle, study_uid: StudyUid) -> ReleasedOut | JSONResponse:
        """Forget a study; the reclaimer deletes its files (hence 202 Accepted)."""
        try:
            released = await cache(ae_title).release_study(study_uid)
        except CacheRequestError as exc:
            return error_response(exc)
        return ReleasedOut(
            study_instance_uid=released.study_instance_uid,
            instances=released.instances,
            request_id=released.request_id,
        )

    return router
