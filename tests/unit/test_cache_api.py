"""The cache REST API in-process (httpx over ASGI): listings, jobs, releases, errors.

The app is the process's real app (``create_app``) with the cache router mounted the way
the runtime mounts it (``CacheProcessor.api_router``), over a real store on disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.base import JobProcessor
from processors.cache import CacheProcessor
from processors.contracts import ProcessorContext
from processors.http import Readiness, create_app

AE = "CACHE"


@dataclass
class Api:
    client: httpx.AsyncClient
    processor: CacheProcessor
    sink: RecordingSink


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    sched = TestScheduler()
    sched.advance_to(1_700_000_000)
    sink = RecordingSink(sched)
    proc = CacheProcessor(AE, {"pipeline-lung": "P-LUNG", "priority": "lower"}, sink, sched)
    await proc.start(ProcessorContext(storage=tmp_path))
    processors: dict[str, JobProcessor] = {AE: proc}
    app = create_app(Readiness())
    router = CacheProcessor.api_router(processors)
    assert router is not None
    app.include_router(router)
    rows = [("P1", "S1", "Se1"), ("P1", "S1", "Se1"), ("P1", "S1", "Se2"), ("P2", "S2", "Se3")]
    for i, (patient, study, series) in enumerate(rows):
        inst = make_instance(
            received_at=1_600_000_000_000 + i * 1000,
            ae=AE, patient=patient, study=study, series=series, sop=f"1.{i}",
        )  # fmt: skip
        proc.on_next((0, i, inst))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
        yield Api(client, proc, sink)


async def test_overview_and_listings(api: Api) -> None:
    c = api.client
    assert (await c.get("/cache")).json() == [
        {"ae_title": AE, "patients": 2, "studies": 2, "series": 3, "instances": 4,
         "size_bytes": 4096},
    ]  # fmt: skip
    patients = (await c.get(f"/cache/{AE}/patients")).json()
    assert patients["total"] == 2 and patients["next_offset"] is None
    p1 = patients["items"][0]
    assert p1 == {
        "patient_id": "P1", "studies": 1, "series": 2, "instances": 3, "size_bytes": 3072,
        "first_received_at": "2020-09-13T12:26:40Z", "last_received_at": "2020-09-13T12:26:42Z",
    }  # fmt: skip
    studies = (await c.get(f"/cache/{AE}/studies", params={"patient_id": "P2"})).json()
    assert [s["study_instance_uid"] for s in studies["items"]] == ["S2"]
    series = (await c.get(f"/cache/{AE}/series", params={"study_uid": "S1"})).json()
    assert [(s["series_instance_uid"], s["instances"]) for s in series["items"]] == [
        ("Se1", 2), ("Se2", 1),
    ]  # fmt: skip


async def test_paging(api: Api) -> None:
    first = (await api.client.get(f"/cache/{AE}/series", params={"limit": 2})).json()
    assert (first["total"], first["limit"], first["offset"], first["next_offset"]) == (3, 2, 0, 2)
    rest = (await api.client.get(f"/cache/{AE}/series", params={"offset": 2})).json()
    assert [s["series_instance_uid"] for s in rest["items"]] == ["Se3"]
    assert rest["next_offset"] is None
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        response = await api.client.get(f"/cache/{AE}/studies", params=bad)
        assert response.status_code == 422, bad


async def test_show_one_study(api: Api) -> None:
    body = (await api.client.get(f"/cache/{AE}/studies/S1")).json()
    assert body["study"]["study_instance_uid"] == "S1" and body["study"]["series"] == 2
    assert [s["series_instance_uid"] for s in body["series"]] == ["Se1", "Se2"]
    missing = await api.client.get(f"/cache/{AE}/studies/S9")
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_studies"


async def test_post_jobs_submits_and_releases(api: Api) -> None:
    response = await api.client.post(f"/cache/{AE}/jobs", json={"studies": ["S1"]})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["pipeline_name"] == "lung" and job["pipeline_id"] == "P-LUNG"
    assert job["priority"] == "lower" and job["studies"] == ["S1"] and job["instances"] == 3
    [record] = api.sink.records
    assert record.jobs[0].job_id == job["job_id"]
    assert sorted(i.sop_instance_uid for i in record.instances) == ["1.0", "1.1", "1.2"]
    listed = (await api.client.get(f"/cache/{AE}/studies")).json()
    assert [s["study_instance_uid"] for s in listed["items"]] == ["S2"]
    again = await api.client.post(f"/cache/{AE}/jobs", json={"studies": ["S1"]})
    assert again.status_code == 404 and again.json()["unknown_studies"] == ["S1"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"studies": []}, 422, None),
        ({"studies": ["S1"], "priority": "urgent"}, 422, None),
        ({"studies": ["S1"], "colour": "red"}, 422, None),
        ({}, 422, None),
        ({"studies": ["S1", "S9"]}, 404, "unknown_studies"),
        ({"studies": ["S1"], "pipeline": "knee"}, 400, "invalid_request"),
        ({"studies": ["S1"], "name": "--"}, 400, "invalid_request"),
        ({"studies": [" "]}, 400, "invalid_request"),
    ],
)
async def test_bad_job_requests_are_clear_and_change_nothing(
    api: Api, body: dict[str, object], status: int, code: str | None
) -> None:
    response = await api.client.post(f"/cache/{AE}/jobs", json=body)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code
        assert response.json()["error"]
    else:
        assert response.json()["detail"][0]["loc"][0] == "body"
    assert api.sink.records == []
    assert api.processor.store.overview().instances == 4


async def test_unknown_ae_title_is_404_naming_the_served_ones(api: Api) -> None:
    for method, path in [
        ("GET", "/cache/cache/patients"),
        ("GET", "/cache/NOPE/studies/S1"),
        ("POST", "/cache/NOPE/jobs"),
        ("DELETE", "/cache/NOPE/studies/S1"),
    ]:
        kwargs = {"json": {"studies": ["S1"]}} if method == "POST" else {}
        response = await api.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, path
        body = response.json()
        assert body["code"] == "unknown_ae_title" and "(served: CACHE)" in body["error"]


async def test_delete_releases_a_study_without_a_job(api: Api) -> None:
    response = await api.client.delete(f"/cache/{AE}/studies/S2")
    assert response.status_code == 202
    assert response.json()["instances"] == 1
    [record] = api.sink.records
    assert record.jobs == () and record.group_key == "S2"
    assert (await api.client.get(f"/cache/{AE}/studies/S2")).status_code == 404
    assert (await api.client.delete(f"/cache/{AE}/studies/S2")).status_code == 404


async def test_a_stopped_processor_answers_503(api: Api) -> None:
    api.processor.on_completed()
    response = await api.client.get(f"/cache/{AE}/patients")
    assert response.status_code == 503
    assert response.json() == {
        "error": f"the cache of AE title {AE} is stopped",
        "code": "unavailable",
    }


async def test_the_openapi_document_describes_every_route(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths) >= {
        "/cache", "/cache/{ae_title}/patients", "/cache/{ae_title}/studies",
        "/cache/{ae_title}/series", "/cache/{ae_title}/studies/{study_uid}",
        "/cache/{ae_title}/jobs",
    }  # fmt: skip
    post = paths["/cache/{ae_title}/jobs"]["post"]
    assert set(post["responses"]) == {"201", "400", "404", "409", "422", "503"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobOut"
    }
    assert set(paths["/cache/{ae_title}/studies/{study_uid}"]) == {"get", "delete"}
    priority = doc["components"]["schemas"]["JobRequest"]["properties"]["priority"]
    assert {"enum": ["lower", "normal", "higher", "immediate"], "type": "string"} in priority[
        "anyOf"
    ]
