"""The ASGI application of a process: health, readiness and Prometheus metrics.

FastAPI (on Starlette) rather than bare Starlette because issue 7's cache processor
serves a REST API with an OpenAPI document on the same port: it mounts its router on
this app (``app.include_router(router)``) and the document at ``/openapi.json`` covers
both. The probes are in the document too; ``/metrics`` is not (it is Prometheus text).
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel

from processors.http.auth import ApiAuth, AuthMiddleware
from processors.http.readiness import Readiness


class Health(BaseModel):
    """Body of ``/healthz``."""

    status: Literal["ok"] = "ok"


class CheckState(BaseModel):
    """One readiness check in the ``/readyz`` body."""

    ok: bool
    error: str | None = None


class ReadyState(BaseModel):
    """Body of ``/readyz``: the verdict, every check, and the failing ones by name."""

    status: Literal["ready", "not ready"]
    checks: dict[str, CheckState]
    failing: list[str]


def create_app(
    readiness: Readiness,
    *,
    registry: CollectorRegistry = REGISTRY,
    title: str = "DICOM Stream Adapter",
    version: str = "0.1.0",
    auth: ApiAuth | None = None,
) -> FastAPI:
    """An app serving ``/healthz``, ``/readyz`` and ``/metrics`` for ``readiness``.

    With ``auth`` (what every process passes: :meth:`ApiAuth.of` its config) every
    other path, including routes added later, needs credentials
    (:mod:`processors.http.auth`); without, the app is open (tests of routes alone).
    """
    app = FastAPI(title=title, version=version)
    if auth is not None:
        app.add_middleware(AuthMiddleware, auth=auth)

    @app.get("/healthz", response_model=Health, tags=["probes"])
    async def healthz() -> Health:
        """200 while the process's event loop runs: this handler runs on that loop."""
        return Health()

    @app.get(
        "/readyz",
        response_model=ReadyState,
        tags=["probes"],
        responses={503: {"model": ReadyState, "description": "a check is failing"}},
    )
    async def readyz() -> JSONResponse:
        """200 when every registered readiness check passes, else 503 naming the failures."""
        report = await readiness.evaluate()
        body = ReadyState(
            status="ready" if report.ready else "not ready",
            checks={r.name: CheckState(ok=r.ok, error=r.error) for r in report.results},
            failing=list(report.failing),
        )
        return JSONResponse(body.model_dump(), status_code=200 if report.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus text (or OpenMetrics when the scraper asks for it)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encoder(registry), media_type=content_type)

    return app
