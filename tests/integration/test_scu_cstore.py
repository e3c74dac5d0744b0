"""C-STORE SCU against real peers: DCMTK storescp, Orthanc and a recording pynetdicom SCP.

What arrived is checked on the peer (files on disk, Orthanc's REST API, the SCP's own
record), never only from the sender's word.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers.dicom import make_ct, write_instances
from helpers.orthanc import OrthancServer
from helpers.peers import RecordingScp, StoreScp, free_port
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from streams.scu import CStoreSender, DicomPeer, ScuTimeouts, SendItem, SendOutcome

pytestmark = pytest.mark.dicom


def _cts(folder: Path, n: int, **kwargs: object) -> list[Path]:
    return write_instances(folder, [make_ct(instance_number=i, **kwargs) for i in range(n)])  # type: ignore[arg-type]


def _rle(folder: Path) -> Path:
    ds = make_ct(rows=16, cols=16, instance_number=7)
    ds.compress(RLELossless)
    return write_instances(folder, [ds])[0]


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_batch_to_storescp_one_outcome_per_file_in_order(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 5)
    rle = _rle(tmp_path / "in")
    junk = tmp_path / "in" / "junk.dcm"
    junk.write_bytes(b"no DICOM here" * 50)
    batch = [files[0], junk, *files[1:], rle, tmp_path / "in" / "gone.dcm"]
    seen: list[SendOutcome] = []
    with StoreScp(tmp_path / "out") as scp:
        sender = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port, "EXPORTER"))
        outcomes = sender.send_batch(batch, progress=seen.append)
        stored = scp.stored()
    assert [o.index for o in outcomes] == list(range(len(batch)))
    assert [o.label for o in outcomes] == [str(p) for p in batch]
    assert [o.kind for o in outcomes] == ["sent", "failed", *["sent"] * 4, "sent", "failed"]
    assert (outcomes[1].reason, outcomes[-1].reason) == ("not_dicom", "missing")
    assert all(o.status == 0x0000 for o in outcomes if o.kind == "sent")
    # on the peer: every DICOM file once, by SOP Instance UID
    assert sorted(stored) == sorted(_uid(p) for p in [*files, rle])
    # storescp takes no RLE by default: converted, and said so
    rle_outcome = outcomes[6]
    assert rle_outcome.converted_from == RLELossless
    assert rle_outcome.transfer_syntax_uid == ExplicitVRLittleEndian
    assert stored[_uid(rle)] == ExplicitVRLittleEndian
    assert all(not o.converted_from for o in outcomes[:6] if o.kind == "sent")
    assert sorted(o.index for o in seen) == list(range(len(batch)))


def test_compressed_file_goes_as_is_when_the_peer_takes_it(tmp_path: Path) -> None:
    rle = _rle(tmp_path / "in")
    original = dcmread(rle).pixel_array
    with StoreScp(tmp_path / "out", extra=["+xa"]) as scp:
        (outcome,) = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port)).send_batch([rle])
        (stored,) = scp.files()
    assert (outcome.kind, outcome.transfer_syntax_uid, outcome.converted_from) == (
        "sent",
        RLELossless,
        "",
    )
    on_peer = dcmread(stored)
    assert on_peer.file_meta.TransferSyntaxUID == RLELossless
    assert (on_peer.pixel_array == original).all()


def test_bytes_in_and_async_call(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 3)
    items = [SendItem.of_bytes(p.read_bytes(), f"job/{n}") for n, p in enumerate(files)]
    with StoreScp(tmp_path / "out") as scp:
        sender = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port))
        outcomes = asyncio.run(sender.send(items))
        stored = scp.stored()
    assert [(o.label, o.kind) for o in outcomes] == [(f"job/{n}", "sent") for n in range(3)]
    assert sorted(stored) == sorted(_uid(p) for p in files)


def test_nagle_is_off_so_small_instances_do_not_stall(tmp_path: Path) -> None:
    # storescp as shipped keeps Nagle on; without TCP_NODELAY and quick ACKs on our side
    # each C-STORE waits ~88 ms (40 instances ~3.5 s). Measured with them: ~0.2 s.
    files = _cts(tmp_path / "in", 40)
    with StoreScp(tmp_path / "out") as scp:
        sender = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port))
        sender.send_batch(files[:1])  # warm-up: imports, first association
        started = time.monotonic()
        outcomes = sender.send_batch(files)
        elapsed = time.monotonic() - started
    assert all(o.kind == "sent" for o in outcomes)
    assert elapsed < 2.0, f"40 small C-STOREs took {elapsed:.2f} s: Nagle/delayed-ACK stalls?"


def test_refusal_of_one_instance_does_not_stop_the_others(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 4)
    bad = _uid(files[1])
    with RecordingScp(status_for=lambda uid: 0xA900 if uid == bad else 0x0000) as scp:
        outcomes = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port)).send_batch(files)
        received, associations = scp.uids(), scp.associations
    assert [o.kind for o in outcomes] == ["sent", "refused", "sent", "sent"]
    assert outcomes[1].status == 0xA900
    assert outcomes[1].sop_instance_uid == bad
    assert "0xA900" in outcomes[1].error
    assert received == [_uid(p) for p in files]  # each once, in order
    assert associations == 1


def test_implicit_only_peer_gets_a_re_encoded_instance(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    with RecordingScp(transfer_syntaxes=[ImplicitVRLittleEndian]) as scp:
        outcomes = CStoreSender(DicomPeer(scp.ae_title, "127.0.0.1", scp.port)).send_batch(files)
        received = list(scp.received)
    assert [(o.kind, o.transfer_syntax_uid, o.converted_from) for o in outcomes] == [
        ("sent", ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    ] * 2
    assert {r.transfer_syntax_uid for r in received} == {ImplicitVRLittleEndian}


def test_sop_class_the_peer_refuses_is_no_context_and_the_rest_go(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    odd = make_ct()
    odd.SOPClassUID = odd.file_meta.MediaStorageSOPClassUID = generate_uid()  # unknown class
    odd_file = write_instances(tmp_path / "odd", [odd])[0]
    with OrthancServer(tmp_path / "orthanc") as orthanc:  # UnknownSopClassAccepted: false
        peer = DicomPeer(orthanc.ae_title, "127.0.0.1", orthanc.dicom_port)
        outcomes = CStoreSender(peer).send_batch([files[0], odd_file, files[1]])
        on_orthanc = orthanc.sop_instance_uids()
    assert [o.kind for o in outcomes] == ["sent", "failed", "sent"]
    assert outcomes[1].reason == "no_context"
    assert sorted(on_orthanc) == sorted(_uid(p) for p in files)
    assert all(o.sop_class_uid == CTImageStorage for o in (outcomes[0], outcomes[2]))


def test_orthanc_rejects_a_wrong_called_ae_permanently(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    with OrthancServer(tmp_path / "orthanc") as orthanc:  # DicomCheckCalledAet: true
        peer = DicomPeer("NOT-ORTHANC", "127.0.0.1", orthanc.dicom_port)
        outcomes = CStoreSender(peer).send_batch(files)
        assert orthanc.sop_instance_uids() == []
    assert {(o.kind, o.reason) for o in outcomes} == {("failed", "rejected_permanent")}
    assert "Called AE title not recognised" in outcomes[0].error


def test_nothing_listening_fails_every_item_fast_and_leaks_no_socket(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    peer = DicomPeer("NOBODY", "127.0.0.1", free_port())
    outcomes = CStoreSender(peer, timeouts=ScuTimeouts.uniform(5)).send_batch(files)
    assert [(o.kind, o.reason) for o in outcomes] == [("failed", "connect_failed")] * 2
    assert "NOBODY@127.0.0.1" in outcomes[0].error
    # filterwarnings=error: an unclosed socket would fail the test as a ResourceWarning


def test_peer_killed_mid_batch_reports_at_once_without_waiting_the_timeout(
    tmp_path: Path,
) -> None:
    files = _cts(tmp_path / "in", 30, rows=128, cols=128)
    with StoreScp(tmp_path / "out") as scp:

        def kill_after_third(outcome: SendOutcome) -> None:
            if outcome.index == 2:
                scp.kill()

        sender = CStoreSender(
            DicomPeer(scp.ae_title, "127.0.0.1", scp.port), timeouts=ScuTimeouts.uniform(30)
        )
        started = time.monotonic()
        outcomes = sender.send_batch(files, progress=kill_after_third)
        elapsed = time.monotonic() - started
        stored = scp.stored()
    kinds = [o.kind for o in outcomes]
    assert kinds[:3] == ["sent"] * 3
    delivered = {o.sop_instance_uid for o in outcomes if o.kind == "sent"}
    assert delivered <= set(stored)  # nothing claimed that the peer does not hold
    rest = outcomes[kinds.index("failed") :]
    assert rest[0].reason in ("association_dropped", "not_sent")
    assert {o.reason for o in rest[1:]} == {"not_sent"}
    assert elapsed < 15, f"took {elapsed:.1f} s: waited for the DIMSE timeout?"
