"""Export attempts end to end against real peers: storescp, Orthanc (C-STORE and STOW-RS),
a pynetdicom SCP that refuses chosen instances; and a crash (SIGKILL) mid-attempt.

Events go through an injected ``publish`` that encodes, validates against the JSON
Schemas and decodes each event (what the role will hand to Kafka). What arrived is
checked on the peer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from helpers.dicom import make_ct, write_instances
from helpers.export_proc import append_journal, read_journal
from helpers.orthanc import OrthancServer
from helpers.peers import RecordingScp, StoreScp
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from processors.export import ExportWorker, fold, make_senders, retry_policy
from streams.config import AdapterConfig
from streams.errors import BrokerError
from streams.events import (
    Envelope,
    ExportCompleted,
    ExportFailed,
    ExportFile,
    ExportRequested,
    ExportRetryRequested,
    decode,
    encode,
    envelope,
    schema_path,
)

pytestmark = pytest.mark.dicom

REPO = Path(__file__).resolve().parents[2]
TOPIC = "t.exports"
NOW = 1_750_000_000.0


class Journal:
    """An in-memory durable log: ``publish`` keeps what a broker would (schema-checked)."""

    def __init__(self, fail_on_write: int | None = None) -> None:
        self.entries: list[tuple[str, Envelope]] = []
        self.writes = 0
        self.fail_on_write = fail_on_write

    async def publish(self, topic: str, key: str, env: Envelope) -> None:
        assert topic == TOPIC
        self.writes += 1
        if self.writes == self.fail_on_write:
            raise BrokerError("broker gone (test)")
        wire = encode(env)
        schema = json.loads(schema_path(env.type).read_text())
        jsonschema.validate(orjson.loads(wire), schema)
        self.entries.append((key, decode(wire)))

    def types(self) -> list[str]:
        return [env.type for _, env in self.entries]

    def write(self, key: str, record: Any) -> None:
        self.entries.append((key, envelope(record, source="cli", time_ms=int(NOW * 1000))))


def config(destinations: list[dict[str, Any]], batch_size: int = 100) -> AdapterConfig:
    return AdapterConfig.model_validate(
        {
            "export": {
                "destinations": destinations,
                "batch_size": batch_size,
                "max_attempts": 3,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.1,
            }
        }
    )


def worker(cfg: AdapterConfig, journal: Journal) -> ExportWorker:
    return ExportWorker(
        ledger=fold(journal.entries),
        senders=make_senders(cfg),
        publish=journal.publish,
        topic=TOPIC,
        source="test-exporter",
        policy=retry_policy(cfg),
        batch_size=cfg.export.batch_size,
        clock=lambda: NOW,
        rand=lambda: 0.0,
    )


def request(files: list[Path], *destinations: str, request_id: str = "req-1") -> ExportRequested:
    return ExportRequested(
        request_id,
        destinations,
        tuple(ExportFile(str(p)) for p in files),
        job_id="job-1",
        requested_by="test",
    )


def uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def cts(folder: Path, n: int, **kwargs: Any) -> list[Path]:
    return write_instances(folder, [make_ct(instance_number=i, **kwargs) for i in range(n)])


def dicom(name: str, ae: str, port: int) -> dict[str, Any]:
    return {"kind": "dicom", "name": name, "ae_title": ae, "host": "127.0.0.1", "port": port}


async def settle(w: ExportWorker, request_id: str, destination: str) -> list[Envelope]:
    """Attempts until the export is no longer open (the clock is pinned: no waiting)."""
    ends = []
    for _ in range(10):
        env = await w.attempt(request_id, destination)
        if env is None:
            break
        ends.append(env)
    return ends


def test_batches_to_storescp_arrive_once_with_progress_between(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 6)
    rle = make_ct(rows=16, cols=16, instance_number=9)
    rle.compress(RLELossless)
    files += write_instances(tmp_path / "in", [rle])
    journal = Journal()
    journal.write("req-1", request(files, "store"))
    with StoreScp(tmp_path / "out") as scp:
        w = worker(config([dicom("store", scp.ae_title, scp.port)], batch_size=3), journal)
        ends = asyncio.run(settle(w, "req-1", "store"))
        stored, overwrites = scp.stored(), scp.overwrites()
    assert journal.types() == [
        "export.requested",
        "export.progress",
        "export.progress",
        "export.completed",
    ]
    assert [e.type for e in ends] == ["export.completed"]
    assert sorted(stored) == sorted(uid(p) for p in files) and overwrites == 0
    assert stored[uid(files[-1])] == ExplicitVRLittleEndian  # storescp takes no RLE
    state = w.ledger.get("req-1", "store")
    assert state is not None and (state.status, state.attempts, state.delivered) == (
        "completed",
        1,
        7,
    )


def test_two_destinations_orthanc_cstore_and_stow(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 5)
    journal = Journal()
    journal.write("req-1", request(files, "orthanc-dimse", "orthanc-web"))
    with (
        OrthancServer(tmp_path / "o1") as dimse,
        OrthancServer(tmp_path / "o2", users={"exporter": "pw"}) as web,
    ):
        destinations = [
            dicom("orthanc-dimse", dimse.ae_title, dimse.dicom_port),
            {
                "kind": "dicomweb",
                "name": "orthanc-web",
                "url": web.dicomweb_url,
                "auth": {"kind": "basic", "username": "exporter", "password": "pw"},
            },
        ]
        w = worker(config(destinations, batch_size=2), journal)
        for name in ("orthanc-dimse", "orthanc-web"):
            assert [e.type for e in asyncio.run(settle(w, "req-1", name))] == ["export.completed"]
        on_dimse, on_web = dimse.sop_instance_uids(), web.sop_instance_uids()
    assert sorted(on_dimse) == sorted(uid(p) for p in files)  # each once
    assert sorted(on_web) == sorted(uid(p) for p in files)
    assert Counter(journal.types())["export.progress"] == 4  # 3 batches each, 2 between


def test_refused_instance_named_rest_delivered_and_retry_sends_only_it(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 4)
    bad = uid(files[1])
    refusing = {"on": True}

    def status_for(sop: str) -> int:
        return 0xA900 if sop == bad and refusing["on"] else 0x0000

    journal = Journal()
    journal.write("req-1", request(files, "rec"))
    with RecordingScp(status_for=status_for) as scp:
        w = worker(config([dicom("rec", scp.ae_title, scp.port)]), journal)
        (first,) = asyncio.run(settle(w, "req-1", "rec"))
        assert isinstance(first.data, ExportFailed) and not first.data.will_retry
        refused = [i for i in first.data.instances if i.status != "sent"]
        assert [(i.sop_instance_uid, i.status, i.code) for i in refused] == [
            (bad, "refused", 0xA900)
        ]
        assert "0xA900" in first.data.error
        state = w.ledger.get("req-1", "rec")
        assert state is not None and (state.status, state.delivered) == ("dead", 3)
        # the operator fixes the peer and retries (what `export retry` will write)
        refusing["on"] = False
        journal.write("req-1", ExportRetryRequested("req-1", "rec", "ops@host", "fixed"))
        w.ledger.apply(*journal.entries[-1])
        (second,) = asyncio.run(settle(w, "req-1", "rec"))
        received = scp.uids()
    assert isinstance(second.data, ExportCompleted) and second.data.attempt == 2
    assert [i.sop_instance_uid for i in second.data.instances] == [bad]
    assert Counter(received) == {**{uid(p): 1 for p in files}, bad: 2}


def test_orthanc_refusing_one_sop_class_names_that_instance(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 3)
    odd = make_ct(instance_number=7)
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.1"
    files.insert(1, write_instances(tmp_path / "odd", [odd])[0])
    journal = Journal()
    journal.write("req-1", request(files, "orthanc"))
    with OrthancServer(tmp_path / "orthanc") as orthanc:  # UnknownSopClassAccepted: false
        w = worker(config([dicom("orthanc", orthanc.ae_title, orthanc.dicom_port)]), journal)
        (end,) = asyncio.run(settle(w, "req-1", "orthanc"))
        on_orthanc = orthanc.sop_instance_uids()
    assert isinstance(end.data, ExportFailed) and not end.data.will_retry
    (named,) = [i for i in end.data.instances if i.status != "sent"]
    assert (named.sop_instance_uid, named.status, named.retriable) == (
        str(odd.SOPInstanceUID),
        "failed",
        False,
    )
    assert "accepted no context" in named.error
    assert sorted(on_orthanc) == sorted(uid(p) for p in files if p != files[1])


def test_out_of_resources_retries_only_what_is_owed(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 6)
    busy = uid(files[2])
    answers: Counter[str] = Counter()

    def status_for(sop: str) -> int:
        answers[sop] += 1
        return 0xA700 if sop == busy and answers[sop] == 1 else 0x0000

    journal = Journal()
    journal.write("req-1", request(files, "rec"))
    with RecordingScp(status_for=status_for) as scp:
        w = worker(config([dicom("rec", scp.ae_title, scp.port)], batch_size=2), journal)
        ends = asyncio.run(settle(w, "req-1", "rec"))
        received, associations = scp.uids(), scp.associations
    first, second = ends
    assert isinstance(first.data, ExportFailed) and first.data.will_retry
    assert first.data.retry_at == int(NOW * 1000)  # rand pinned to 0: no delay
    # attempt 1 stopped after the batch with 0xA700; the third batch waited for attempt 2
    assert journal.types() == [
        "export.requested",
        "export.progress",
        "export.failed",
        "export.progress",
        "export.completed",
    ]
    assert isinstance(second.data, ExportCompleted) and second.data.attempt == 2
    assert Counter(received) == {**{uid(p): 1 for p in files}, busy: 2}
    assert received[4:] == [busy, uid(files[4]), uid(files[5])]
    assert associations == 4


def test_unknown_destination_dead_letters_without_sending(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 2)
    journal = Journal()
    journal.write("req-1", request(files, "nowhere"))
    w = worker(config([]), journal)
    (end,) = asyncio.run(settle(w, "req-1", "nowhere"))
    assert isinstance(end.data, ExportFailed) and not end.data.will_retry
    assert "'nowhere' is not in export.destinations" in end.data.instances[0].error


def test_crash_between_batches_resends_only_the_unconfirmed_batch(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 6)
    journal = Journal(fail_on_write=2)  # the 2nd progress event never becomes durable
    journal.write("req-1", request(files, "rec"))
    with RecordingScp() as scp:
        cfg = config([dicom("rec", scp.ae_title, scp.port)], batch_size=2)
        with pytest.raises(BrokerError):
            asyncio.run(worker(cfg, journal).attempt("req-1", "rec"))
        # restart: a new exporter folds what is durable and goes on
        journal.fail_on_write = None
        ends = asyncio.run(settle(worker(cfg, journal), "req-1", "rec"))
        received = scp.uids()
    assert [e.type for e in ends] == ["export.completed"]
    sent_twice = [u for u, n in Counter(received).items() if n > 1]
    assert sorted(sent_twice) == sorted(uid(p) for p in files[2:4])  # the batch in flight
    assert set(received) == {uid(p) for p in files}


def test_sigkill_mid_attempt_then_restart_delivers_each_file_once(tmp_path: Path) -> None:
    files = cts(tmp_path / "in", 40, rows=64, cols=64)
    journal_path = tmp_path / "journal"
    append_journal(journal_path, "req-1", envelope(request(files, "store"), source="t", time_ms=1))
    with StoreScp(tmp_path / "out") as scp:
        cfg_path = tmp_path / "adapter.json"
        cfg_path.write_text(config([dicom("store", scp.ae_title, scp.port)], 4).model_dump_json())
        env = {**os.environ, "EXPORT_PUBLISH_DELAY_S": "0.2"}  # a slow broker
        cmd = [sys.executable, "-m", "tests.helpers.export_proc", str(journal_path), str(cfg_path)]
        first = subprocess.Popen(cmd, cwd=REPO, env=env)
        try:
            deadline = time.monotonic() + 60
            # Kill once the peer holds files that no durable event records yet: the
            # exporter is waiting for its (slow) broker after a confirmed batch.
            while True:
                on_peer = len(scp.files())
                recorded = 4 * _count(journal_path, "export.progress")
                if recorded >= 8 and on_peer > recorded:
                    break
                assert first.poll() is None, "the exporter ended before it was killed"
                assert time.monotonic() < deadline, "no progress events within 60 s"
                time.sleep(0.005)  # polling interval, not an assertion
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait()
        assert _count(journal_path, "export.completed") == 0  # killed mid-attempt
        stored_at_kill = len(scp.files())
        second = subprocess.run(cmd, cwd=REPO, env=env, timeout=120, check=False)
        stored, overwrites = scp.stored(), scp.overwrites()
    assert second.returncode == 0
    assert stored_at_kill < len(files)
    assert sorted(stored) == sorted(uid(p) for p in files)  # every file, one file each
    print(f"stored at the kill: {stored_at_kill}, sent again after the restart: {overwrites}")
    # the batch the peer had confirmed but no event recorded was sent again, nothing else
    assert 1 <= overwrites <= 4
    state = fold(read_journal(journal_path)).get("req-1", "store")
    assert state is not None and (state.status, state.delivered) == ("completed", 40)


def _count(journal: Path, kind: str) -> int:
    return sum(1 for _, env in read_journal(journal) if env.type == kind)
