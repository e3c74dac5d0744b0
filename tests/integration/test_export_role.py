"""The export role on a real Kafka broker, with real peers (storescp, Orthanc, a refusing
pynetdicom SCP): requests from ``dicom-adapter export send`` and ``POST /exports``, a
SIGKILL mid-batch and a restart, the CLI's list/show/retry. What arrived is checked on
the peer.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from helpers.dicom import make_ct, write_instances
from helpers.orthanc import OrthancServer
from helpers.peers import RecordingScp, StoreScp
from pydicom import dcmread

from processors.cli import main
from streams.events import Envelope, ExportCompleted, ExportFailed
from streams.kafka import Record
from tests.helpers.waiting import free_port, wait_for_ledger, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


TOKEN = "export-test-token-0123456789"  # the API needs one (docs/security.md)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def write_config(
    path: Path, storage: Path, prefix: str, destinations: list[dict[str, Any]], **export: Any
) -> Path:
    settings = {
        "adapter_id": "exporter-test",
        "storage": str(storage),
        "kafka": {"topic_prefix": prefix, "partitions": 3},
        "http": {"host": "127.0.0.1", "port": free_port(), "auth": {"tokens": [TOKEN]}},
        "export": {
            "destinations": destinations,
            "batch_size": 4,
            "max_attempts": 3,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
            **export,
        },
    }
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def dicom(name: str, ae: str, port: int) -> dict[str, Any]:
    return {"kind": "dicom", "name": name, "ae_title": ae, "host": "127.0.0.1", "port": port}


def http_port(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["http"]["port"])


@asynccontextmanager
async def export_role(config: Path, bootstrap: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``dicom-adapter export`` as compose runs it, until the block ends (SIGTERM)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processors.cli", "export",
        "--config", str(config), "--kafka", bootstrap,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def ready(config: Path, proc: asyncio.subprocess.Process) -> None:
    url = f"http://127.0.0.1:{http_port(config)}/readyz"

    async def check() -> bool:
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(
                f"the export role exited {proc.returncode}:\n{err.decode()[-3000:]}"
            )
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url, timeout=2)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(check, "the export role is ready", timeout_s=60)


async def cli(config: Path, bootstrap: str, action: str, *args: str) -> int:
    """``dicom-adapter export ACTION ...`` in this process (off the event loop)."""
    argv = ["export", action, "--config", str(config), "--kafka", bootstrap, *args]
    return await asyncio.to_thread(main, argv)


def finals(records: list[Record]) -> list[Envelope]:
    return [
        r.envelope for r in records if isinstance(r.envelope.data, ExportCompleted | ExportFailed)
    ]


def uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def cts(folder: Path, n: int, **kwargs: Any) -> list[Path]:
    return write_instances(folder, [make_ct(instance_number=i, **kwargs) for i in range(n)])


async def test_send_to_storescp_and_orthanc_survives_a_sigkill_mid_batch(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.exports"
    storage = tmp_path / "storage"
    files = cts(tmp_path / "results", 80, rows=64, cols=64)
    with StoreScp(tmp_path / "storescp") as store, OrthancServer(tmp_path / "orthanc") as orthanc:
        config = write_config(
            tmp_path / "adapter.yaml",
            storage,
            prefix,
            [
                dicom("store", store.ae_title, store.port),
                dicom("orthanc", orthanc.ae_title, orthanc.dicom_port),
            ],
        )
        async with export_role(config, kafka_bootstrap) as first:
            await ready(config, first)
            code = await cli(
                config, kafka_bootstrap, "send", "--to", "store", "--to", "orthanc",
                "--job", "job-7", "--request-id", "req-kill", str(tmp_path / "results"),
            )  # fmt: skip
            assert code == 0
            # Kill once the peer holds some files of the request but not all: mid-attempt.
            await wait_until(lambda: len(store.files()) >= 8, "storescp has 8 files", timeout_s=60)
            first.kill()
            await first.wait()
        at_kill = len(store.files())
        records = await wait_for_ledger(kafka_bootstrap, topic, lambda rs: True)
        assert not any(
            isinstance(e.data, ExportCompleted) and e.data.destination == "store"
            for e in finals(records)
        ), "the attempt to storescp ended before the kill: nothing was tested"
        assert at_kill < len(files)
        async with export_role(config, kafka_bootstrap):
            records = await wait_for_ledger(
                kafka_bootstrap,
                topic,
                lambda rs: (
                    {e.data.destination for e in finals(rs) if isinstance(e.data, ExportCompleted)}
                    == {"store", "orthanc"}
                ),
            )
            await wait_until(
                lambda: not (storage / "exports" / "req-kill").exists(),
                "the staged files are removed once every destination completed",
                timeout_s=30,
            )
        stored, overwrites = store.stored(), store.overwrites()
        on_orthanc = orthanc.sop_instance_uids()
    wanted = sorted(uid(p) for p in files)
    assert sorted(stored) == wanted  # storescp: one file per instance, every instance
    assert sorted(on_orthanc) == wanted  # Orthanc: each instance once
    # Re-sent after the restart: at most the batch in flight at the kill (batch_size 4).
    print(f"storescp had {at_kill} files at the kill; {overwrites} re-sent after the restart")
    assert overwrites <= 4
    requested = [r for r in records if r.envelope.type == "export.requested"]
    assert len(requested) == 1 and requested[0].key == "req-kill"


async def test_refused_instance_is_named_the_rest_delivered_and_retry_completes(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.exports"
    files = cts(tmp_path / "results", 6)
    bad = uid(files[2])
    refusing = {"on": True}

    def status_for(sop: str) -> int:
        return 0xA900 if sop == bad and refusing["on"] else 0x0000

    with RecordingScp(status_for=status_for) as peer:
        config = write_config(
            tmp_path / "adapter.yaml",
            tmp_path / "storage",
            prefix,
            [dicom("pacs", peer.ae_title, peer.port)],
        )
        async with export_role(config, kafka_bootstrap) as role:
            await ready(config, role)
            sent = await cli(
                config,
                kafka_bootstrap,
                "send",
                "--to",
                "pacs",
                "--request-id",
                "req-a",
                *map(str, files),
            )
            assert sent == 0
            records = await wait_for_ledger(kafka_bootstrap, topic, lambda rs: bool(finals(rs)))
            (end,) = finals(records)
            assert isinstance(end.data, ExportFailed) and not end.data.will_retry
            named = [
                (i.sop_instance_uid, i.status, i.code)
                for i in end.data.instances
                if i.status != "sent"
            ]
            assert named == [(bad, "refused", 0xA900)]
            assert Counter(peer.uids()) == {uid(p): 1 for p in files}  # the rest delivered
            capsys.readouterr()
            assert await cli(config, kafka_bootstrap, "list", "--json") == 0
            (listed,) = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert (listed["state"], listed["delivered"], listed["files"]) == ("dead", 5, 6)
            refusing["on"] = False
            assert await cli(config, kafka_bootstrap, "retry", "req-a", "--reason", "fixed") == 0
            records = await wait_for_ledger(kafka_bootstrap, topic, lambda rs: len(finals(rs)) == 2)
            assert isinstance(finals(records)[-1].data, ExportCompleted)
            assert await cli(config, kafka_bootstrap, "show", "req-a") == 0
            shown = capsys.readouterr().out
            assert "completed" in shown and "export.retry_requested" in shown
        assert Counter(peer.uids()) == {**{uid(p): 1 for p in files}, bad: 2}  # only it again


async def test_rest_post_exports_upload_to_storescp_and_stow_rs_and_files_under_storage(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    storage = tmp_path / "storage"
    received = cts(storage / "CT-AE" / "study" / "series", 2)  # as if received by the SCP
    uploads = cts(tmp_path / "upload", 2)
    outside = cts(tmp_path / "elsewhere", 1)
    (tmp_path / "not-dicom.txt").write_text("hello")
    with (
        StoreScp(tmp_path / "storescp") as store,
        OrthancServer(tmp_path / "orthanc", users={"exporter": "pw"}) as web,
    ):
        stow = {
            "kind": "dicomweb",
            "name": "orthanc-web",
            "url": web.dicomweb_url,
            "auth": {"kind": "basic", "username": "exporter", "password": "pw"},
        }
        config = write_config(
            tmp_path / "adapter.yaml",
            storage,
            prefix,
            [dicom("store", store.ae_title, store.port), stow],
        )
        base = f"http://127.0.0.1:{http_port(config)}"
        async with export_role(config, kafka_bootstrap) as role:
            await ready(config, role)
            async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as client:
                multipart = [
                    ("file", (p.name, p.read_bytes(), "application/dicom")) for p in uploads
                ]
                fields = {"destination": ["store", "orthanc-web"], "job_id": "job-1"}
                answer = await client.post("/exports", data=fields, files=multipart)
                assert answer.status_code == 202, answer.text
                first = answer.json()["request_id"]
                assert answer.headers["location"] == f"/exports/{first}"
                body = {"destinations": ["store"], "files": [str(p) for p in received]}
                answer = await client.post(
                    "/exports", json=body, headers={"Idempotency-Key": "req-json"}
                )
                assert answer.status_code == 202, answer.text
                again = await client.post(
                    "/exports", json=body, headers={"Idempotency-Key": "req-json"}
                )
                assert again.status_code == 200 and again.json()["request_id"] == "req-json"
                # refusals: each names the problem, nothing is requested
                bad = [
                    ({"destinations": ["nowhere"], "files": [str(received[0])]}, "nowhere"),
                    (
                        {"destinations": ["store"], "files": [str(outside[0])]},
                        "not under the storage",
                    ),
                    (
                        {
                            "destinations": ["store"],
                            "files": [str(storage / ".." / "elsewhere" / outside[0].name)],
                        },
                        "not under the storage",
                    ),
                    ({"destinations": ["store"], "files": []}, "files"),
                ]
                for payload, reason in bad:
                    refused = await client.post("/exports", json=payload)
                    assert refused.status_code == 400 and reason in refused.json()["error"], (
                        refused.text
                    )
                not_dicom = await client.post(
                    "/exports",
                    data={"destination": "store"},
                    files=[("file", ("notes.txt", b"hello", "application/dicom"))],
                )
                assert not_dicom.status_code == 400 and "notes.txt" in not_dicom.json()["error"]
                assert (
                    await client.post(
                        "/exports", content=b"x", headers={"content-type": "text/plain"}
                    )
                ).status_code == 415

                async def done(request_id: str) -> bool:
                    view = (await client.get(f"/exports/{request_id}")).json()
                    return bool(view["state"] == "completed")

                await wait_until(lambda: done(first), "the upload is delivered", timeout_s=60)
                await wait_until(
                    lambda: done("req-json"), "the JSON request is delivered", timeout_s=60
                )
                view = (await client.get("/exports/req-json")).json()
                assert [f["status"] for f in view["destinations"][0]["files"]] == ["sent", "sent"]
                assert (await client.get("/exports/unknown-id")).status_code == 404
                upload_view = (await client.get(f"/exports/{first}")).json()
        stored = store.stored()
        on_web = web.sop_instance_uids()
    assert sorted(stored) == sorted(uid(p) for p in [*uploads, *received])
    # the upload also went over STOW-RS to Orthanc's DICOMweb plugin, each instance once
    assert sorted(on_web) == sorted(uid(p) for p in uploads)
    assert [d["destination"] for d in upload_view["destinations"]] == ["store", "orthanc-web"]
    assert all(p.exists() for p in received)  # staged as hard links: the originals stay
