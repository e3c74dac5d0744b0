"""The local outbox: group-committed appends, ordered reads, checkpoints, crash repair."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.events import InstanceReceived, envelope
from streams.scp.outbox import Outbox, OutboxEntry, OutboxError, decode_entry, encode_entry


def _entry(n: int) -> OutboxEntry:
    data = InstanceReceived(
        called_ae="CT",
        calling_ae="MOD",
        calling_host="127.0.0.1",
        association_id="a-1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=f"1.2.3.{n}",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id="P",
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        received_at=1000 + n,
        uri=f"/data/{n}.dcm",
        size=100,
        tags={"00080050": "A"},
    )
    return OutboxEntry("dicom.instances", "CT/P", envelope(data, source="ad", time_ms=1000 + n))


def test_entry_round_trip_keeps_the_event_id() -> None:
    entry = _entry(1)
    line = encode_entry(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_entry(line) == entry


def test_append_read_commit_reset(tmp_path: Path) -> None:
    box = Outbox(tmp_path / ".outbox")
    try:
        assert box.pending_bytes == 0 and box.read() == ([], 0)
        box.append([encode_entry(_entry(i)) for i in range(5)])
        entries, end = box.read(max_entries=3)
        assert [e.envelope.data.sop_instance_uid for e in entries] == [
            "1.2.3.0",
            "1.2.3.1",
            "1.2.3.2",
        ]
        box.commit(end)
        entries, end2 = box.read()
        assert [e.envelope.data.sop_instance_uid for e in entries] == ["1.2.3.3", "1.2.3.4"]
        assert not box.reset_if_drained()
        box.commit(end2)
        assert box.pending_bytes == 0
        assert box.reset_if_drained()
        assert not (tmp_path / ".outbox" / "events.jsonl").exists()
        box.append([encode_entry(_entry(9))])  # a fresh file after the reset
        assert [e.envelope.data.sop_instance_uid for e in box.read()[0]] == ["1.2.3.9"]
    finally:
        box.close()


def test_reopen_resumes_after_checkpoint_with_same_ids(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    entries = [_entry(i) for i in range(4)]
    box.append([encode_entry(e) for e in entries])
    _, end = box.read(max_entries=2)
    box.commit(end)
    box.close()
    again = Outbox(tmp_path)
    try:
        left, _ = again.read()
        assert [e.envelope.id for e in left] == [e.envelope.id for e in entries[2:]]
    finally:
        again.close()


def test_torn_last_line_is_cut_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path)
    box.append([encode_entry(_entry(1)), encode_entry(_entry(2))])
    box.close()
    log = tmp_path / "events.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + encode_entry(_entry(3))[:40])  # a crash mid-append
    again = Outbox(tmp_path)
    try:
        assert "torn last line" in caplog.text
        assert log.read_bytes() == whole
        assert [e.envelope.data.sop_instance_uid for e in again.read()[0]] == ["1.2.3.1", "1.2.3.2"]
        again.append([encode_entry(_entry(4))])  # appends continue on a clean line
        assert len(again.read()[0]) == 3
    finally:
        again.close()


def test_undecodable_line_is_skipped_not_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path)
    try:
        box.append([encode_entry(_entry(1)), b'{"topic": 1}\n', encode_entry(_entry(2))])
        entries, end = box.read()
        assert [e.envelope.data.sop_instance_uid for e in entries] == ["1.2.3.1", "1.2.3.2"]
        assert end == box.offsets()[1]
        assert "skipped" in caplog.text
    finally:
        box.close()


def test_one_process_per_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    try:
        # flock is per open file description, so a second open in-process conflicts too.
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(tmp_path)
    finally:
        box.close()
    Outbox(tmp_path).close()
