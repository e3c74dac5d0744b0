"""Which stored files are orphans (issue 13): the pure rules, the scan and the outbox."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from processors.reclaim.orphans import (
    CLOCK_SLACK_MS,
    StoredFile,
    candidates,
    outbox_uris,
    read_from_ms,
    scan_instance_files,
)
from processors.reclaim.sweeper import OrphanSweeper, sweep_interval_s
from streams.events import InstanceReceived, RecordKeys, envelope
from streams.scp.outbox import OutboxEntry, encode_entry


def _file(uri: str, mtime_ms: int) -> StoredFile:
    return StoredFile(uri, mtime_ms, 10)


def test_candidates_are_old_enough_and_unknown_oldest_first() -> None:
    files = [
        _file("/s/A/1/1/c.dcm", 500),
        _file("/s/A/1/1/a.dcm", 100),
        _file("/s/A/1/1/b.dcm", 950),
    ]
    known = {"/s/A/1/1/a.dcm"}.__contains__
    assert candidates(files, now_ms=1_000, grace_ms=100, known=known) == [files[0]]
    assert [f.uri for f in candidates(files, 1_000, 0, lambda _u: False)] == [
        "/s/A/1/1/a.dcm",
        "/s/A/1/1/c.dcm",
        "/s/A/1/1/b.dcm",
    ]
    assert read_from_ms(files) == 100 - CLOCK_SLACK_MS
    assert read_from_ms([]) is None


def test_a_stored_file_names_its_ae_study_series_and_sop() -> None:
    assert _file("/st/CT-AE/1.2/1.2.3/1.2.3.4.dcm", 0).parts == ("CT-AE", "1.2", "1.2.3", "1.2.3.4")


def _touch(path: Path, data: bytes = b"x" * 10) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_the_scan_finds_instance_files_only(tmp_path: Path) -> None:
    instance = _touch(tmp_path / "AE" / "st" / "se" / "sop.dcm")
    _touch(tmp_path / "AE" / "st" / "se" / ".sop.dcm.1a2b.tmp")  # being written
    _touch(tmp_path / "AE" / "st" / "se" / "notes.txt")
    _touch(tmp_path / "payloads" / "job" / "dcm" / "sop.dcm")  # depth 4 too, but a payload
    _touch(tmp_path / "exports" / "r" / "x" / "sop.dcm")
    _touch(tmp_path / ".outbox" / "a" / "b" / "sop.dcm")
    _touch(tmp_path / "AE" / "st" / "sop.dcm")  # not the layout
    _touch(tmp_path / "AE" / "st" / "se" / "deeper" / "sop.dcm")
    os.utime(instance, ns=(1_000_000_000, 1_000_000_000))
    (found,) = scan_instance_files(tmp_path)
    assert found == StoredFile(instance, 1_000, 10)
    assert list(scan_instance_files(tmp_path / "missing")) == []


def _received(uri: str) -> bytes:
    data = InstanceReceived(
        called_ae="AE", calling_ae="SCU", calling_host="127.0.0.1", association_id="a",
        sop_class_uid="1.2", sop_instance_uid="1.2.3", transfer_syntax_uid="1.2.840.10008.1.2",
        patient_id="P", study_instance_uid="1", series_instance_uid="2", received_at=1,
        uri=uri, size=10,
    )  # fmt: skip
    return encode_entry(OutboxEntry("p.instances", "AE/x", envelope(data, source="t", time_ms=1)))


def test_outbox_files_of_every_scp_are_known_and_a_torn_line_is_not(tmp_path: Path) -> None:
    outbox = tmp_path / ".outbox"
    (outbox / "adapter-1").mkdir(parents=True)
    (outbox / "adapter-1" / "events.jsonl").write_bytes(_received("/s/a.dcm") + b"garbage\n")
    (outbox / "adapter-2").mkdir()
    torn = _received("/s/c.dcm")[:-5]
    (outbox / "adapter-2" / "events.jsonl").write_bytes(_received("/s/b.dcm") + torn)
    assert outbox_uris(tmp_path) == {"/s/a.dcm", "/s/b.dcm"}
    assert outbox_uris(tmp_path / "none") == set()


def test_the_sweep_interval_follows_the_grace() -> None:
    assert sweep_interval_s(3600) == 900
    assert sweep_interval_s(2.0) == 0.5
    assert sweep_interval_s(0.0) == 0.1


async def test_a_sweep_that_cannot_read_the_topic_removes_nothing(tmp_path: Path) -> None:
    old = _touch(tmp_path / "AE" / "st" / "se" / "sop.dcm")
    os.utime(old, (1.0, 1.0))
    published: list[object] = []

    class Publisher:
        async def publish(self, *args: object, **kwargs: object) -> tuple[int, int]:
            published.append(args)
            return 0, 0

    sweeper = OrphanSweeper(
        storage=tmp_path, kafka="127.0.0.1:1", instances_topic="p.instances",
        publisher=Publisher(), jobs_topic="p.jobs", source="t", keys=RecordKeys(),
        grace_s=1.0,
    )  # type: ignore[arg-type]  # fmt: skip
    assert await sweeper.sweep(asyncio.Event()) == []  # no broker: skipped, not a crash
    assert os.path.exists(old) and published == []  # noqa: ASYNC240
