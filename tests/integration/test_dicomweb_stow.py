"""STOW-RS ingest with real clients: dicomweb-client, Orthanc's DICOMweb plugin pushing to
us, and hand-built multipart bodies for the bad parts; events on a real Kafka broker.

The SCP runs in-process (``ScpService``) with the STOW-RS routes on a real HTTP server;
the last test runs ``dicom-adapter run`` and checks that C-STORE and STOW-RS instances of
one study form one group with one job.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client import DICOMwebClient
from fastapi import FastAPI
from helpers.dicom import make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.orthanc import OrthancServer
from helpers.scp import scp_config
from pydicom import Dataset
from pydicom.uid import generate_uid

from processors.http import HttpServer
from processors.roles.dicomweb import stow_router
from streams.dicomweb import StowReceiver
from streams.events import GroupClosed, InstanceReceived, RecordKeys
from streams.scp import ScpService
from streams.storage import DiskUsage
from tests.helpers.waiting import free_port, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
AE = "CT-AE"
TOKEN = "stow-test-token-0123456789"
FAILED, STORED, REASON = "00081198", "00081199", "00081197"


@asynccontextmanager
async def stow_scp(
    storage: Path, bootstrap: str, prefix: str, disk: dict[str, bool] | None = None
) -> AsyncIterator[str]:
    """An SCP with the STOW-RS routes on a real HTTP server; yields the DICOMweb base URL
    of AE title ``CT-AE``. ``disk["full"]`` puts storage below its watermark."""
    state = disk if disk is not None else {"full": False}

    def usage(_path: Path) -> DiskUsage:
        return DiskUsage(total=100, free=0 if state["full"] else 100)

    config = scp_config(storage, bootstrap, prefix, watermark_percent=90)
    async with ScpService(config, disk_usage=usage) as scp:
        receiver = StowReceiver(scp.handler.store_instance, [AE])
        app = FastAPI()
        app.include_router(stow_router(receiver))
        try:
            async with HttpServer(app, "127.0.0.1", 0) as http:
                yield f"{http.url}/dicomweb/{AE}"
        finally:
            receiver.close()


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[str, bytes]:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
        for kind, data in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def uids(items: Any) -> list[str]:
    return [i["00081155"].get("Value", [""])[0] for i in items]


async def test_dicomweb_client_stores_instances_with_the_fields_of_c_store(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    study = generate_uid()
    datasets = [make_ct(study_uid=study, instance_number=i) for i in range(3)]
    async with stow_scp(tmp_path / "storage", kafka_bootstrap, prefix) as url:
        client = DICOMwebClient(url)
        answer = await asyncio.to_thread(client.store_instances, datasets, study)
    stored = [str(i.ReferencedSOPInstanceUID) for i in answer.ReferencedSOPSequence]
    assert sorted(stored) == sorted(str(d.SOPInstanceUID) for d in datasets)
    assert "FailedSOPSequence" not in answer
    events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=3)
    received = [e.data for _, e in events if isinstance(e.data, InstanceReceived)]
    assert sorted(r.sop_instance_uid for r in received) == sorted(
        str(d.SOPInstanceUID) for d in datasets
    )
    for r in received:
        assert (r.called_ae, r.calling_ae, r.calling_host) == (AE, "DICOMWEB", "127.0.0.1")
        assert r.study_instance_uid == study and r.patient_id == "PAT-1"
        assert r.uri.endswith(f"/{AE}/{study}/{r.series_instance_uid}/{r.sop_instance_uid}.dcm")
    sizes = await asyncio.to_thread(lambda: [os.path.getsize(r.uri) for r in received])
    assert sizes == [r.size for r in received]  # every file is there, whole
    assert len({r.association_id for r in received}) == 1  # one per HTTP request
    assert {k for k, _ in events} == {RecordKeys()(AE, "PAT-1")}  # the C-STORE key


async def test_bad_parts_get_their_ps3_18_failure_reasons(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    study = generate_uid()
    good = make_ct(study_uid=study)
    other_study = make_ct()
    private = make_ct(study_uid=study)
    private.SOPClassUID = private.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6"
    disk = {"full": False}
    async with (
        stow_scp(tmp_path / "storage", kafka_bootstrap, prefix, disk) as url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        kind, body = multipart(
            [
                ("application/dicom", part10(good)),
                ("application/dicom", b"this is not DICOM"),
                ("application/dicom", part10(other_study)),
                ("application/dicom", part10(private)),
                ("application/dicom+json", b"{}"),
            ]
        )
        answer = await http.post(
            f"{url}/studies/{study}", content=body, headers={"content-type": kind}
        )
        assert (
            answer.status_code == 202 and answer.headers["content-type"] == "application/dicom+json"
        )
        got = answer.json()
        assert uids(got[STORED]["Value"]) == [str(good.SOPInstanceUID)]
        failed = [
            (u, i[REASON]["Value"][0])
            for u, i in zip(uids(got[FAILED]["Value"]), got[FAILED]["Value"], strict=True)
        ]
        assert failed == [
            ("", 0xC000),  # not a DICOM Part 10 file
            (str(other_study.SOPInstanceUID), 0x0110),  # not the study of the URL
            (str(private.SOPInstanceUID), 0x0122),  # not a storage SOP class
            ("", 0xC000),  # not application/dicom
        ]
        # Over the watermark: nothing stored, 0xA700 for each part, 409.
        disk["full"] = True
        kind, body = multipart([("application/dicom", part10(make_ct()))] * 2)
        full = await http.post(f"{url}/studies", content=body, headers={"content-type": kind})
        assert full.status_code == 409
        assert [i[REASON]["Value"][0] for i in full.json()[FAILED]["Value"]] == [0xA700, 0xA700]
        disk["full"] = False
        # Requests refused as a whole.
        wrong = await http.post(
            f"{url}/studies", content=b"{}", headers={"content-type": "application/json"}
        )
        assert wrong.status_code == 415 and "multipart/related" in wrong.json()["error"]
        truncated = body[: len(body) // 2]
        broken = await http.post(
            f"{url}/studies", content=truncated, headers={"content-type": kind}
        )
        assert broken.status_code == 400 and "closing boundary" in broken.json()["error"]
        nobody = url.replace(f"/{AE}", "/NOBODY")
        unknown = await http.post(f"{nobody}/studies", content=body, headers={"content-type": kind})
        assert unknown.status_code == 404 and AE in unknown.json()["error"]
    events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=1, timeout_s=10)
    assert [e.data.sop_instance_uid for _, e in events] == [str(good.SOPInstanceUID)]  # type: ignore[union-attr]
    stored = list((tmp_path / "storage" / AE).rglob("*.dcm"))
    assert [p.name for p in stored] == [f"{good.SOPInstanceUID}.dcm"]


async def test_orthanc_dicomweb_plugin_pushes_a_study_to_us(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    study = generate_uid()
    datasets = [make_ct(study_uid=study, instance_number=i) for i in range(4)]
    async with stow_scp(tmp_path / "storage", kafka_bootstrap, prefix) as url:
        servers = {"DicomWeb": {"Servers": {"adapter": [url + "/"]}}}
        with OrthancServer(tmp_path / "orthanc", extra=servers) as orthanc:
            for ds in datasets:
                assert (
                    await asyncio.to_thread(orthanc.post, "/instances", part10(ds))
                ).status_code == 200
            (orthanc_study,) = orthanc.get("/studies").json()
            job = await asyncio.to_thread(
                orthanc.post, "/dicom-web/servers/adapter/stow", {"Resources": [orthanc_study]}
            )
            assert job.status_code == 200, job.text
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=4)
    received = [e.data for _, e in events if isinstance(e.data, InstanceReceived)]
    assert sorted(r.sop_instance_uid for r in received) == sorted(
        str(d.SOPInstanceUID) for d in datasets
    )
    assert {(r.calling_ae, r.study_instance_uid) for r in received} == {("DICOMWEB", study)}


async def test_c_store_and_stow_instances_of_one_study_form_one_group_and_one_job(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    study, series = generate_uid(), generate_uid()
    by_cstore = write_instances(
        tmp_path / "cstore",
        [make_ct(study_uid=study, series_uid=series, instance_number=i) for i in range(3)],
    )
    by_stow = [
        make_ct(study_uid=study, series_uid=series, instance_number=10 + i) for i in range(3)
    ]
    dicom_port, http_port = free_port(), free_port()
    config = tmp_path / "adapter.yaml"
    config.write_text(
        f"adapter_id: mixed\nstorage: {tmp_path / 'storage'}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
        f"http:\n  host: 127.0.0.1\n  port: {http_port}\n  auth:\n    tokens: [{TOKEN}]\n"
        f"scp:\n  host: 127.0.0.1\n  port: {dicom_port}\n  watermark_percent: 100\n"
        f"  reserve_space_gb: 0\n  ae_titles:\n    - ae_title: {AE}\n      processorSettings:\n"
        "        groupBy: Study\n        timeout: 5\n        pipeline-seg: 8abf244aff7647989d4f\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processors.cli", "run",
        "--config", str(config), "--kafka", kafka_bootstrap,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):  # readiness poll with a deadline (60 s)
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"run exited {proc.returncode}: {err.decode()[-2000:]}")
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("dicom-adapter run not ready in 60 s")
        sent = await asyncio.to_thread(storescu, dicom_port, by_cstore, aec=AE)
        assert sent.returncode == 0, sent.stderr
        client = DICOMwebClient(
            f"http://127.0.0.1:{http_port}/dicomweb/{AE}",
            headers={"Authorization": f"Bearer {TOKEN}"},  # the API needs a token
        )
        await asyncio.to_thread(client.store_instances, by_stow)
        records = await wait_for_ledger(
            kafka_bootstrap,
            f"{prefix}.jobs",
            lambda rs: any(isinstance(r.envelope.data, GroupClosed) for r in rs),
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.communicate(), 60)
    (group,) = [r.envelope.data for r in records if isinstance(r.envelope.data, GroupClosed)]
    wanted = {str(p.stem) for p in by_cstore} | {str(d.SOPInstanceUID) for d in by_stow}
    assert {i.sop_instance_uid for i in group.instances} == wanted
    assert (group.group_key, len(group.jobs)) == (study, 1)
