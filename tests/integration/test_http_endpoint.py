"""The per-process HTTP endpoint, served for real on a loopback port (issue 6)."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest
from fastapi import APIRouter

from processors.http import HttpServer, HttpServerError, Readiness, create_app, open_http_server
from streams import metrics
from streams.config import HttpConfig

METRIC_NAMES = (
    "dicom_adapter_instances_received_total",
    "dicom_adapter_instances_stored_total",
    "dicom_adapter_instances_published_total",
    "dicom_adapter_instances_refused_total",
    "dicom_adapter_outbox_pending_bytes",
    "dicom_adapter_open_groups",
    "dicom_adapter_group_close_lag_seconds",
    "dicom_adapter_jobs_total",
    "dicom_adapter_submit_attempts_total",
    "dicom_adapter_consumer_lag",
    "dicom_adapter_reclaimed_bytes_total",
    "dicom_adapter_instances_ignored_total",
)


async def test_probes_and_metrics_on_a_free_port() -> None:
    readiness = Readiness()
    assigned = readiness.flag("partitions assigned")
    readiness.add("kafka connected", lambda: True)
    sigint = signal.getsignal(signal.SIGINT)
    async with (
        HttpServer(create_app(readiness), "127.0.0.1", 0) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as client,
    ):
        assert server.port > 0
        assert signal.getsignal(signal.SIGINT) is sigint, "the server must not take SIGINT"

        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})

        before = await client.get("/readyz")
        assert before.status_code == 503
        assert before.json() == {
            "status": "not ready",
            "checks": {
                "partitions assigned": {"ok": False, "error": "not yet"},
                "kafka connected": {"ok": True, "error": None},
            },
            "failing": ["partitions assigned"],
        }

        assigned.set()
        after = await client.get("/readyz")
        assert after.status_code == 200
        assert after.json()["status"] == "ready"
        assert after.json()["failing"] == []

        metrics.instance_refused("HTTP-TEST", 0xA700)
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        for name in METRIC_NAMES:
            assert name in scrape.text, name
        assert 'dicom_adapter_instances_refused_total{called_ae="HTTP-TEST",status="0xA700"}' in (
            scrape.text
        )
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as late:
            await late.get(f"http://127.0.0.1:{server.port}/healthz")


async def test_openmetrics_when_the_scraper_asks() -> None:
    async with (
        HttpServer(create_app(Readiness()), "127.0.0.1", 0) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as client,
    ):
        scrape = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    assert scrape.text.rstrip().endswith("# EOF")


async def test_another_router_shares_the_app_and_its_openapi_document() -> None:
    """Issue 7's REST API mounts its router on the same app and port."""
    router = APIRouter()

    @router.get("/studies")
    async def studies() -> list[str]:
        return ["1.2.3"]

    app = create_app(Readiness())
    app.include_router(router)
    async with (
        HttpServer(app, "127.0.0.1", 0) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5) as client,
    ):
        assert (await client.get("/studies")).json() == ["1.2.3"]
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/healthz", "/readyz", "/studies"} <= set(paths)
    assert "/metrics" not in paths


async def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = HttpConfig(host="127.0.0.1", port=port)
        with pytest.raises(HttpServerError) as caught:
            async with open_http_server(config, Readiness()):
                pytest.fail("the server started on a taken port")
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot listen on 127.0.0.1:{port}" in message
    assert "http.port" in message


async def test_port_zero_in_the_config_disables_the_endpoint() -> None:
    async with open_http_server(HttpConfig(host="127.0.0.1", port=0), Readiness()) as server:
        assert server is None


async def test_open_http_server_serves_the_configured_port() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HttpConfig(host="127.0.0.1", port=port)
    async with open_http_server(config, Readiness()) as server:
        assert server is not None and server.port == port
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
