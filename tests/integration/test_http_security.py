"""The HTTP API's security on real servers: HTTPS with client certificates (uvicorn),
and every route of a running ``dicom-adapter run`` behind authentication.

The second test reads the process's own ``/openapi.json`` and calls every path and
method it lists, so a route added later (by any role) cannot escape: without a token
401, with one anything but 401. Only ``/healthz``, ``/readyz`` and ``/metrics`` are open.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from helpers.pki import make_pki
from helpers.waiting import free_port, wait_until

from processors.http import OPEN_PATHS, ApiAuth, HttpServer, Readiness, create_app
from streams.config import AdapterConfig
from streams.tls import server_context

REPO = Path(__file__).resolve().parents[2]
TOKEN = "openapi-walk-token-0123456789abcdef"


async def test_https_with_client_certificates_on_uvicorn(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    http = {"cert": str(pki.server.cert), "key": str(pki.server.key), "ca": str(pki.ca)}
    config = AdapterConfig.model_validate({"http": {"tls": {**http, "client_certs": "optional"}}})
    assert config.http.tls is not None
    app = create_app(Readiness(), auth=ApiAuth.of(config))
    router = APIRouter()

    @router.get("/cache/{ae}/patients")
    async def patients(ae: str) -> list[str]:
        return ["PAT-1"]

    app.include_router(router)
    trust = ssl.create_default_context(cafile=str(pki.ca))
    certified = ssl.create_default_context(cafile=str(pki.ca))
    certified.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    stranger = ssl.create_default_context(cafile=str(pki.ca))
    stranger.load_cert_chain(str(pki.stranger.cert), str(pki.stranger.key))
    tls = server_context(config.http.tls, "http.tls")
    async with HttpServer(app, "127.0.0.1", 0, tls) as server:
        assert server.url.startswith("https://")
        async with httpx.AsyncClient(base_url=server.url, verify=trust) as anonymous:
            assert (await anonymous.get("/healthz")).status_code == 200
            assert (await anonymous.get("/cache/CT/patients")).status_code == 401
        async with httpx.AsyncClient(base_url=server.url, verify=certified) as client:
            response = await client.get("/cache/CT/patients")
            assert (response.status_code, response.json()) == (200, ["PAT-1"])
        with pytest.raises(httpx.TransportError):  # another CA's certificate: no handshake
            async with httpx.AsyncClient(base_url=server.url, verify=stranger) as other:
                await other.get("/cache/CT/patients")
        async with httpx.AsyncClient(base_url=server.url.replace("https", "http")) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get("/healthz")


@pytest.mark.kafka
async def test_every_route_of_a_running_adapter_needs_a_token(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    http_port = free_port()
    config = tmp_path / "adapter.yaml"
    config.write_text(
        f"storage: {tmp_path / 'storage'}\n"
        f"kafka:\n  topic_prefix: {unique_name('api')}\n  partitions: 1\n"
        f"scp:\n  host: 127.0.0.1\n  port: {free_port()}\n"
        "  ae_titles:\n"
        "    - {ae_title: CT-AE, processorSettings: {pipeline-lung: P1}}\n"
        "    - {ae_title: CACHE-AE, processor: cache, processorSettings: {pipeline-lung: P1}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    env |= {"DICOM_ADAPTER_HTTP__PORT": str(http_port), "DICOM_ADAPTER_HTTP__AUTH__TOKENS": TOKEN}
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processors.cli", "run", "--config", str(config),
            "--kafka", kafka_bootstrap, cwd=REPO, env=env, stderr=err,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    assert proc.returncode is None, log.read_text()[-3000:]
                    return False

            await wait_until(ready, "the adapter's /readyz", timeout_s=90)
            document = await client.get("/openapi.json", headers=auth)
            assert document.status_code == 200
            calls = [
                (method.upper(), path)
                for path, item in document.json()["paths"].items()
                for method in item
                if method in {"get", "put", "post", "delete", "patch"}
            ]
            calls += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")]
            calls += [("GET", path) for path in OPEN_PATHS]
            assert any(path.startswith("/cache") for _, path in calls), calls
            checked = 0
            for method, template in calls:
                path = template.replace("{", "").replace("}", "")  # /cache/{ae} -> /cache/ae
                body = {} if method in {"POST", "PUT", "PATCH"} else None
                anonymous = await client.request(method, path, json=body)
                authorised = await client.request(method, path, json=body, headers=auth)
                if template in OPEN_PATHS:
                    assert anonymous.status_code != 401, (method, template)
                    continue
                assert anonymous.status_code == 401, (method, template, anonymous.text)
                assert authorised.status_code != 401, (method, template, authorised.text)
                checked += 1
            assert checked >= 8, calls
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert TOKEN not in log.read_text()
