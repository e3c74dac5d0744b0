"""The API's authentication middleware (processors/http/auth.py) on the process's app."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter

from processors.http import OPEN_PATHS, ApiAuth, Readiness, create_app
from processors.http.auth import MISSING, NO_CREDENTIALS, WRONG, with_client_certificate
from streams.config import AdapterConfig

TOKEN = "a-token-of-at-least-16-chars"
OTHER = "another-token-of-16-chars"


def app_for(config: dict[str, object]):
    app = create_app(Readiness(), auth=ApiAuth.of(AdapterConfig.model_validate(config)))
    router = APIRouter()

    @router.get("/cache/{ae}/patients")
    async def patients(ae: str) -> list[str]:
        return ["PAT-1"]

    @router.delete("/cache/{ae}")
    async def delete(ae: str) -> dict[str, str]:
        return {"deleted": ae}

    # Added after the app (and its middleware) exist, as roles do.
    app.include_router(router)
    return app


async def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
        return await client.request(method, path, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_guard_every_route_but_the_probes() -> None:
    app = app_for({"http": {"auth": {"tokens": [TOKEN, OTHER]}}})
    for path in sorted(OPEN_PATHS):
        assert (await call(app, "GET", path)).status_code != 401, path
    for method, path in [
        ("GET", "/cache/CT/patients"),
        ("DELETE", "/cache/CT"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no/such/route"),
        ("GET", "/healthz/../cache/CT/patients"),
    ]:
        refused = await call(app, method, path)
        assert refused.status_code == 401, (method, path)
        assert refused.json() == {"detail": MISSING}
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = await call(app, method, path, headers=bearer("not-a-valid-token-at-all"))
        assert (wrong.status_code, wrong.json()["detail"]) == (401, WRONG)
        basic = await call(app, method, path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
    ok = await call(app, "GET", "/cache/CT/patients", headers=bearer(OTHER))
    assert (ok.status_code, ok.json()) == (200, ["PAT-1"])
    assert (await call(app, "DELETE", "/cache/CT", headers=bearer(TOKEN))).status_code == 200
    assert (await call(app, "GET", "/no/such/route", headers=bearer(TOKEN))).status_code == 404


async def test_without_credentials_the_api_is_closed_unless_insecure() -> None:
    closed = app_for({})
    refused = await call(closed, "GET", "/cache/CT/patients", headers=bearer(TOKEN))
    assert (refused.status_code, refused.json()["detail"]) == (401, NO_CREDENTIALS)
    lab = app_for({"security": {"insecure": True}})
    assert (await call(lab, "GET", "/cache/CT/patients")).status_code == 200
    # Insecure does not open an API that has tokens.
    guarded = app_for({"security": {"insecure": True}, "http": {"auth": {"tokens": TOKEN}}})
    assert (await call(guarded, "GET", "/cache/CT/patients")).status_code == 401


async def test_a_verified_client_certificate_authenticates(tmp_path) -> None:
    from helpers.pki import make_pki

    pki = make_pki(tmp_path)
    tls = {"cert": str(pki.server.cert), "key": str(pki.server.key), "ca": str(pki.ca)}
    app = app_for({"http": {"tls": {**tls, "client_certs": "optional"}}})
    assert (await call(app, "GET", "/cache/CT/patients")).status_code == 401
    certified = with_client_certificate(app, "CN=viewer")
    assert (await call(certified, "GET", "/cache/CT/patients")).status_code == 200


def test_tokens_come_from_a_string_or_a_file_and_never_show(tmp_path) -> None:
    file = tmp_path / "tokens"
    file.write_text(f"# API clients\n{OTHER}\n\n")
    config = AdapterConfig.model_validate(
        {"http": {"auth": {"tokens": f"{TOKEN}, x-third-token-0123456", "tokens_file": str(file)}}}
    )
    tokens = [t.get_secret_value() for t in config.http.auth.tokens]
    assert tokens == [TOKEN, "x-third-token-0123456", OTHER]
    assert TOKEN not in repr(config) and OTHER not in repr(config)
    assert TOKEN not in repr(ApiAuth.of(config))


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"tokens": "short"}, "shorter than 16 characters"),
        ({"tokens_file": "/no/such/file"}, "cannot be read"),
    ],
)
def test_bad_tokens_are_config_problems(auth: dict[str, str], problem: str) -> None:
    from streams.config import ConfigSource, build_config
    from streams.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        build_config(ConfigSource(data={"http": {"auth": auth}}))
    text = "\n".join(caught.value.problems)
    assert problem in text and "http.auth" in text and "short\n" not in text
