"""STOW-RS sender against Orthanc's DICOMweb plugin and a small real STOW-RS server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.dicom import make_ct, write_instances
from helpers.orthanc import OrthancServer
from helpers.peers import free_port
from helpers.stow_server import StowServer
from pydicom import dcmread
from pydicom.uid import RLELossless

from streams.scu import StowAuth, StowSender

pytestmark = pytest.mark.dicom


def _cts(folder: Path, n: int) -> list[Path]:
    return write_instances(folder, [make_ct(instance_number=i) for i in range(n)])


def _uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_stow_to_orthanc_stores_every_instance_as_sent(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 4)
    rle = make_ct(rows=16, cols=16)
    rle.compress(RLELossless)
    files += write_instances(tmp_path / "in", [rle])
    big = write_instances(  # > 1 MB in all: dicomweb-client switches to chunked encoding
        tmp_path / "big", [make_ct(rows=512, cols=512, instance_number=i) for i in range(3)]
    )
    with OrthancServer(tmp_path / "orthanc") as orthanc:
        sender = StowSender(orthanc.dicomweb_url, timeout_s=30)
        outcomes = asyncio.run(sender.send([*files, *big]))
        on_orthanc = orthanc.sop_instance_uids()
        rle_syntax = orthanc.transfer_syntax_of(str(rle.SOPInstanceUID))
    assert [(o.kind, o.status, o.http_status) for o in outcomes] == [("sent", 0, 200)] * 8
    assert sorted(on_orthanc) == sorted(_uid(p) for p in [*files, *big])
    assert rle_syntax == RLELossless  # sent as it was, not converted


def test_basic_auth_right_and_wrong(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    with OrthancServer(tmp_path / "orthanc", users={"alice": "s3cret"}) as orthanc:
        wrong = StowSender(
            orthanc.dicomweb_url, auth=StowAuth("basic", "alice", password="guess")
        ).send_batch(files)
        assert orthanc.sop_instance_uids() == []
        right = StowSender(
            orthanc.dicomweb_url, auth=StowAuth("basic", "alice", password="s3cret")
        ).send_batch(files)
        on_orthanc = orthanc.sop_instance_uids()
    assert [(o.kind, o.reason, o.http_status) for o in wrong] == [("failed", "http_error", 401)] * 2
    assert "401 Unauthorized" in wrong[0].error and "guess" not in wrong[0].error
    assert [o.kind for o in right] == ["sent", "sent"]
    assert sorted(on_orthanc) == sorted(_uid(p) for p in files)
    assert "s3cret" not in repr(StowAuth("basic", "alice", password="s3cret"))


def test_partial_failure_names_the_refused_instance(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 3)
    bad = _uid(files[1])
    with StowServer(refuse=lambda uid: 0xA700 if uid == bad else None) as server:
        outcomes = StowSender(server.url).send_batch(files)
        (post,) = server.posts
    assert post.path == "/dicom-web/studies"
    assert post.sop_instance_uids == [_uid(p) for p in files]
    assert [(o.kind, o.status, o.http_status) for o in outcomes] == [
        ("sent", 0, 202),
        ("refused", 0xA700, 202),
        ("sent", 0, 202),
    ]
    assert outcomes[1].sop_instance_uid == bad and "0xA700" in outcomes[1].error


def test_all_refused_is_409_with_per_instance_reasons(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    with StowServer(refuse=lambda _uid: 0xC000) as server:
        outcomes = StowSender(server.url).send_batch(files)
    assert [(o.kind, o.status, o.http_status) for o in outcomes] == [("refused", 0xC000, 409)] * 2


def test_unlisted_instance_is_not_confirmed_and_junk_is_not_posted(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"x" * 300)
    skipped = _uid(files[0])
    with StowServer(omit=lambda uid: uid == skipped) as server:
        outcomes = StowSender(server.url).send_batch([files[0], junk, files[1]])
        (post,) = server.posts
    assert [(o.kind, o.reason) for o in outcomes] == [
        ("failed", "not_confirmed"),
        ("failed", "not_dicom"),
        ("sent", None),
    ]
    assert post.sop_instance_uids == [_uid(files[0]), _uid(files[1])]


def test_server_error_and_bearer_token(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 2)
    with StowServer(status=503) as server:
        outcomes = StowSender(server.url, auth=StowAuth("bearer", token="tok-123")).send_batch(
            files
        )
        (post,) = server.posts  # dicomweb-client's own retries are off
    assert [(o.kind, o.reason, o.http_status) for o in outcomes] == [
        ("failed", "http_error", 503)
    ] * 2
    assert post.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(StowAuth("bearer", token="tok-123"))


def test_no_server_and_slow_server(tmp_path: Path) -> None:
    files = _cts(tmp_path / "in", 1)
    gone = StowSender(f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=5).send_batch(files)
    assert [(o.kind, o.reason) for o in gone] == [("failed", "connect_failed")]
    with StowServer(delay_s=3) as server:
        late = StowSender(server.url, timeout_s=0.5).send_batch(files)
    assert [(o.kind, o.reason) for o in late] == [("failed", "timeout")]
