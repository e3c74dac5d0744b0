"""The export REST API, mounted by the export role on the process's HTTP app.

    POST /exports                 a request: JSON naming files under storage, or
                                  multipart/form-data uploading them -> 202
    GET  /exports/{request_id}    what the ledger says about it -> 200 / 404

``POST`` stages the files (:mod:`processors.export.requests`) and answers 202 only once
``export.requested`` is acknowledged by Kafka (acks=all). A client that sends a request
id (``Idempotency-Key`` header or ``request_id``) may repeat the call safely: a request
the ledger already holds is answered 200 with its state and not written again. Errors
are ``{"error": "..."}``: 400 (bad request, unknown destination, not DICOM, a path
outside the storage folder), 415 (another media type), 503 (Kafka or the disk failed:
nothing was requested, repeat the call).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from processors.export.requests import (
    ExportRequestError,
    Upload,
    check_destinations,
    check_local_files,
    identify,
    load_request,
    request_id_of,
    stage,
    write_request,
)
from processors.export.views import request_view
from streams.config import AdapterConfig
from streams.errors import BrokerError
from streams.events import ExportRequested
from streams.kafka import Connection, Publisher, topic_names
from streams.storage import StagingError

MAX_UPLOAD_FILES = 10_000


class ExportIn(BaseModel):
    """The JSON form of ``POST /exports``: files already under the storage folder."""

    destinations: list[str] = Field(min_length=1)
    files: list[str] = Field(min_length=1)
    job_id: str = ""
    request_id: str = ""
    reason: str = ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def exports_router(
    config: AdapterConfig, storage: Path, kafka: Connection, publisher: Publisher
) -> APIRouter:
    """``POST /exports`` and ``GET /exports/{request_id}`` for this adapter."""
    router = APIRouter(tags=["exports"])
    topic = topic_names(config.kafka.topic_prefix).exports

    async def parse(request: Request) -> tuple[dict[str, Any], list[Upload]]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = ExportIn.model_validate_json(await request.body())
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise ExportRequestError(f"invalid request body: {problems}") from None
            return body.model_dump(exclude={"files"}), check_local_files(storage, body.files)
        form = await request.form(max_files=MAX_UPLOAD_FILES)
        uploads = [
            Upload(value.filename or f"{name} #{i}", data=await value.read())
            for i, (name, value) in enumerate(form.multi_items())
            if isinstance(value, UploadFile)
        ]
        fields: dict[str, Any] = {  # the form's text fields, as the JSON form has them
            "destinations": [v for v in form.getlist("destination") if isinstance(v, str)],
            **{
                k: v
                for k in ("job_id", "request_id", "reason")
                if isinstance(v := form.get(k, ""), str)
            },
        }
        await form.close()
        return fields, uploads

    @router.post(
        "/exports",
        status_code=202,
        responses={
            200: {"description": "a request with this id is already in the ledger"},
            400: {"description": "invalid request; nothing was written"},
            415: {"description": "not application/json or multipart/form-data"},
            503: {"description": "Kafka or the disk failed; repeat with the same id"},
        },
    )
    async def create_export(request: Request) -> JSONResponse:
        """Request an export of DICOM files to configured destinations."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "multipart/form-data"):
            return _error(415, "send application/json (files under storage) or multipart/form-data")
        try:
            fields, uploads = await parse(request)
            given = fields.get("request_id") or None
            key = request.headers.get("idempotency-key")
            request_id = request_id_of(key, given)
            destinations = check_destinations(config, fields.get("destinations", ()))
            if key or given:
                known = await load_request(kafka, topic, request_id)
                if any(s.requested for s in known):
                    return JSONResponse(request_view(known), status_code=200)
            probes = await asyncio.to_thread(identify, uploads)
            files = await asyncio.to_thread(stage, storage, request_id, probes)
            client = request.client.host if request.client else "unknown"
            event = ExportRequested(
                request_id,
                destinations,
                files,
                job_id=str(fields.get("job_id") or ""),
                requested_by=f"http:{client}",
                reason=str(fields.get("reason") or ""),
            )
            await write_request(publisher, topic, event, source=config.adapter_id)
        except ExportRequestError as exc:
            return _error(400, str(exc))
        except StagingError as exc:
            return _error(503, f"cannot stage the files: {exc}; nothing was requested")
        except BrokerError as exc:
            return _error(503, f"{exc}; nothing was requested, repeat with the same id")
        location = f"/exports/{request_id}"
        body = {
            "request_id": request_id,
            "destinations": list(destinations),
            "files": len(files),
            "status": location,
        }
        return JSONResponse(body, status_code=202, headers={"Location": location})

    @router.get("/exports/{request_id}", responses={404: {"description": "unknown request"}})
    async def get_export(request_id: str) -> JSONResponse:
        """An export request as the ledger tells it, per destination."""
        try:
            states = await load_request(kafka, topic, request_id)
        except BrokerError as exc:
            return _error(503, str(exc))
        if not states:
            return _error(404, f"no export request {request_id[:128]!r}")
        return JSONResponse(request_view(states))

    return router
