"""The operator's REST API and the ``/ui`` page, mounted by the process role.

    GET  /groups[?ae_title=AE]         every open group on the bus (all replicas)
    POST /groups/{group_id}/close      close it now (reason forced) -> 202; not open -> 200 no-op
    GET  /jobs[?state=dead]            jobs as the ledger tells them (states, attempts)
    POST /jobs/{job_id}/retry          re-submit a dead-lettered job -> 202
    GET  /throughput                   per minute over the last hour, from the ledger
    GET  /ui                           the page showing all of it (static HTML and JS)

Everything is read from the bus, not from this process's memory, so any process's
API shows the whole adapter. Group keys and patient data are hidden unless
``show_phi=true``. Errors are ``{"error": "..."}``: 404 (no such job), 409 (the job is
not dead-lettered), 503 (Kafka could not be read or written: repeat the call).
"""

from __future__ import annotations

import socket
from dataclasses import asdict
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from processors.groups.bus import open_groups, request_close, wall_ms
from processors.groups.throughput import BUCKET_MS, throughput
from processors.groups.view import row_fields
from processors.redact import redact_data
from processors.submit.state import fold_log
from processors.submit.views import request_retry as write_retry
from processors.submit.views import summary
from streams.errors import BrokerError
from streams.kafka import Connection, TopicNames, read_topic

JobStateName = Literal["pending", "failed", "dead", "submitted"]


class CloseIn(BaseModel):
    """Optional body of ``POST /groups/{group_id}/close`` and ``/jobs/{job_id}/retry``."""

    reason: str = ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _who(request: Request) -> str:
    client = request.client.host if request.client is not None else "?"
    return f"api:{client}@{socket.gethostname()}"


def ops_router(kafka: Connection, names: TopicNames) -> APIRouter:
    """The routes of the module docstring for the bus of ``kafka`` and ``names``."""
    router = APIRouter(tags=["operations"])

    @router.get("/groups")
    async def list_groups(ae_title: str | None = None, show_phi: bool = False) -> Response:
        """Every open group across the processor replicas, oldest first."""
        try:
            found = await open_groups(kafka, names.groups, ae_title=ae_title)
        except BrokerError as exc:
            return _error(503, str(exc))
        now = wall_ms()
        return JSONResponse(
            {"now": now, "groups": [row_fields(r, now, show_phi=show_phi) for r in found]}
        )

    @router.post("/groups/{group_id}/close", status_code=202)
    async def close_group(group_id: str, request: Request, body: CloseIn | None = None) -> Response:
        """Ask the group's owner to close it now (``group.close_requested``)."""
        try:
            outcome = await request_close(
                kafka, names.groups, group_id,
                requested_by=_who(request), reason=body.reason if body else "",
                source="dicom-adapter-api",
            )  # fmt: skip
        except BrokerError as exc:
            return _error(503, str(exc))
        status = 202 if outcome.requested else 200
        return JSONResponse(
            {"group_id": group_id, "requested": outcome.requested, "message": outcome.message()},
            status_code=status,
        )

    @router.get("/jobs")
    async def list_jobs(state: JobStateName | None = None, show_phi: bool = False) -> Response:
        """Every job, oldest first, with its state and attempts."""
        try:
            records = await read_topic(kafka, names.jobs)
        except BrokerError as exc:
            return _error(503, str(exc))
        ledger = fold_log(records)
        jobs = sorted(ledger, key=lambda j: (j.queued_at, j.job_id))
        listed: list[dict[str, Any]] = [
            summary(j) if show_phi else redact_data(summary(j))
            for j in jobs
            if state is None or j.status == state
        ]
        return JSONResponse({"jobs": listed})

    @router.post("/jobs/{job_id}/retry", status_code=202)
    async def retry_job(job_id: str, request: Request, body: CloseIn | None = None) -> Response:
        """Give a dead-lettered job another round of attempts (``job.retry_requested``)."""
        try:
            records = await read_topic(kafka, names.jobs)
            job = fold_log(records).get(job_id)
            if job is None:
                return _error(404, f"no job {job_id} in {names.jobs}")
            if job.status != "dead":
                return _error(409, f"job {job_id} is {job.status}, not dead-lettered")
            await write_retry(
                kafka, names.jobs, job, requested_by=_who(request),
                reason=body.reason if body else "",
            )  # fmt: skip
        except BrokerError as exc:
            return _error(503, str(exc))
        return JSONResponse({"job_id": job_id, "requested": True}, status_code=202)

    @router.get("/throughput")
    async def get_throughput() -> Response:
        """Instances grouped, jobs queued, submitted and failed per minute, last hour."""
        try:
            records = await read_topic(kafka, names.jobs)
        except BrokerError as exc:
            return _error(503, str(exc))
        buckets = throughput((r.envelope for r in records), wall_ms())
        return JSONResponse({"bucket_ms": BUCKET_MS, "buckets": [asdict(b) for b in buckets]})

    @router.get("/ui", include_in_schema=False)
    async def ui() -> HTMLResponse:
        """The operator's page (no build step: one static HTML file with its script)."""
        return HTMLResponse(page())

    return router


def page() -> str:
    """The text of ``ui/index.html`` shipped in this package."""
    return resources.files("processors.groups").joinpath("ui/index.html").read_text("utf-8")
