"""The STOW-RS routes of the ``scp`` role (docs/dicomweb.md), on the process's HTTP app.

    POST /dicomweb/{ae_title}/studies
    POST /dicomweb/{ae_title}/studies/{StudyInstanceUID}

Thin: the body goes to :class:`streams.dicomweb.StowReceiver`, which stores each part
through the SCP's store path; the answer is its Store Instances Response
(``application/dicom+json``), or ``{"error": ...}`` for a request refused as a whole.
Authentication is the app's, as for every route that changes state.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from streams.dicomweb import StowError, StowReceiver

DICOM_JSON = "application/dicom+json"


def stow_router(receiver: StowReceiver) -> APIRouter:
    """The two STOW-RS routes, answered by ``receiver``."""
    router = APIRouter(tags=["dicomweb"])

    async def store(request: Request, ae_title: str, study: str | None) -> Response:
        client = request.client.host if request.client else "unknown"
        try:
            status, body = await receiver.receive(
                ae_title, study, request.headers.get("content-type", ""), request.stream(), client
            )
        except StowError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON)

    @router.post("/dicomweb/{ae_title}/studies", response_class=Response)
    async def store_instances(request: Request, ae_title: str) -> Response:
        """STOW-RS: store the instances of the multipart body for ``ae_title``."""
        return await store(request, ae_title, None)

    @router.post("/dicomweb/{ae_title}/studies/{study}", response_class=Response)
    async def store_study_instances(request: Request, ae_title: str, study: str) -> Response:
        """STOW-RS for one study: instances of another study are refused (0x0110)."""
        return await store(request, ae_title, study)

    return router
