"""Instance storage: sanitised paths, the disk watermark, atomic writes, Part 10 headers."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.storage import (
    GB,
    UNKNOWN,
    DiskUsage,
    SpaceGuard,
    has_space,
    instance_path,
    part10_header,
    path_to_uri,
    reserved_bytes,
    sanitize_component,
    uri_to_path,
    write_atomic,
)

# -- sanitize_component -----------------------------------------------------------------


@pytest.mark.parametrize(
    "uid",
    ["1.2.840.10008.5.1.4.1.1.2", "1.2.3", "CT-AE", "a_b-c.d", "x" * 128],
)
def test_safe_values_are_kept_verbatim(uid: str) -> None:
    assert sanitize_component(uid) == uid


@pytest.mark.parametrize(
    "hostile",
    [
        "..",
        ".",
        "../../x",
        "../..",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "a\x00b",
        ".hidden",
        ".outbox",
        " ",
        "ä",
        "x" * 129,
        "1.2.3/../../4",
    ],
)
def test_hostile_values_become_one_safe_component(hostile: str) -> None:
    out = sanitize_component(hostile)
    assert out not in ("", ".", "..")
    assert not out.startswith(".")
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert len(out) <= 128
    assert "~" in out  # altered names are marked, so they never equal a verbatim name


def test_missing_value_maps_to_placeholder() -> None:
    assert sanitize_component("") == UNKNOWN == "_unknown"


def test_similar_hostile_values_do_not_collide() -> None:
    values = ["a/b", "a\\b", "a_b~", "a b", "a\x00b", "../a/b", "..", "."]
    outs = {sanitize_component(v) for v in values}
    assert len(outs) == len(values)
    assert sanitize_component("a_b") == "a_b"
    assert sanitize_component("a/b") != "a_b"


@given(st.text(max_size=300))
def test_any_text_is_a_single_component_inside_root(value: str) -> None:
    out = sanitize_component(value)
    assert out and out not in (".", "..") and not out.startswith(".")
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert len(out) <= 128
    root = Path("/storage/root")
    path = instance_path(root, value, value, value, value)
    assert path.parent.parent.parent.parent == root
    assert os.path.normpath(path) == str(path)


@given(st.text(max_size=80), st.text(max_size=80))
def test_distinct_values_give_distinct_components(a: str, b: str) -> None:
    if a != b and a and b:
        assert sanitize_component(a) != sanitize_component(b)


def test_instance_path_layout(tmp_path: Path) -> None:
    path = instance_path(tmp_path, "CT-AE", "1.2", "1.2.3", "1.2.3.4")
    assert path == tmp_path / "CT-AE" / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    evil = instance_path(tmp_path, "CT-AE", "..", "../../..", "../../x")
    assert evil.resolve().is_relative_to(tmp_path.resolve())
    missing = instance_path(tmp_path, "CT-AE", "", "", "1.2")
    assert missing == tmp_path / "CT-AE" / "_unknown" / "_unknown" / "1.2.dcm"


def test_uri_is_the_absolute_path_and_file_uris_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "CT AE" / "a~b.dcm"
    uri = path_to_uri(path)
    assert uri == str(path) and uri.startswith("/")
    assert uri_to_path(uri) == path
    assert uri_to_path(path.as_uri()) == path
    for bad in ("http://host/x.dcm", "file://otherhost/x.dcm", "relative/x.dcm"):
        with pytest.raises(ValueError, match="not"):
            uri_to_path(bad)


# -- disk watermark (Clara reference case 34, total 10 GB) --------------------------------


@pytest.mark.parametrize(
    ("free_gb", "watermark", "reserve_gb", "reserved_gb", "available"),
    [
        (9, 90, 1, 1, True),
        (5, 10, 1, 9, False),
        (5, 99, 9, 9, False),
        (9, 10, 1, 9, False),  # 9 > 9 is false: the comparison is strict
    ],
)
def test_clara_watermark_cases(
    free_gb: int, watermark: int, reserve_gb: int, reserved_gb: int, available: bool
) -> None:
    total = 10 * GB
    assert reserved_bytes(total, watermark, reserve_gb) == reserved_gb * GB
    assert has_space(total, free_gb * GB, watermark, reserve_gb) is available


def test_space_guard_asks_the_injected_disk(tmp_path: Path) -> None:
    seen: list[Path] = []

    def usage(path: Path) -> DiskUsage:
        seen.append(path)
        return DiskUsage(total=10 * GB, free=5 * GB)

    assert not SpaceGuard(tmp_path, 10, 1, usage).available()
    assert SpaceGuard(tmp_path, 90, 1, usage).available()
    assert seen == [tmp_path, tmp_path]
    assert SpaceGuard(tmp_path, 100, 0).available()  # the real disk has some space


# -- atomic writes -------------------------------------------------------------------------


def test_write_atomic_creates_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.dcm"
    assert write_atomic(target, [b"one", b"two"]) == 6
    assert target.read_bytes() == b"onetwo"
    assert write_atomic(target, [b"3"], durable=False) == 1
    assert target.read_bytes() == b"3"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.dcm"]


def test_write_atomic_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.dcm"
    target.write_bytes(b"old")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, chunks())
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"]


def test_write_atomic_under_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "CT").write_bytes(b"not a directory")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "CT" / "1" / "2.dcm", [b"x"])


# -- Part 10 header --------------------------------------------------------------------------


@pytest.mark.parametrize("sop", ["1.2.3", "1.2.34"])  # odd and even lengths (UI pads with NUL)
def test_part10_header_is_read_back_by_pydicom(sop: str) -> None:
    header = part10_header(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=sop,
        transfer_syntax_uid="1.2.840.10008.1.2",
        implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
        implementation_version_name="PYNETDICOM_304",
        source_ae_title="MODALITY",
    )
    # Implicit VR LE data set: (0010,0020) PatientID "P1"
    dataset = bytes.fromhex("10002000") + (2).to_bytes(4, "little") + b"P1"
    ds = pydicom.dcmread(BytesIO(header + dataset))
    meta = ds.file_meta
    assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert meta.MediaStorageSOPInstanceUID == sop
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert meta.ImplementationClassUID == "1.2.826.0.1.3680043.9.3811.3.0.4"
    assert meta.ImplementationVersionName == "PYNETDICOM_304"
    assert meta.SourceApplicationEntityTitle == "MODALITY"
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.FileMetaInformationGroupLength == len(header) - 128 - 4 - 12
    assert ds.PatientID == "P1"
    assert header[:128] == b"\x00" * 128 and header[128:132] == b"DICM"


def test_space_guard_counts_a_payloads_folder_on_another_file_system(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    devices = {tmp_path: 1, payloads: 2}
    free = {tmp_path: 5 * GB, payloads: 1 * GB}

    def usage(path: Path) -> DiskUsage:
        return DiskUsage(total=10 * GB, free=free[path])

    guard = SpaceGuard(tmp_path, 80, 0, usage, devices.get)
    assert guard.checked() == (tmp_path, payloads)
    assert not guard.available()  # the payloads' disk is past the watermark
    free[payloads] = 3 * GB
    assert guard.available()
    devices[payloads] = 1  # the same file system: checked once
    assert guard.checked() == (tmp_path,)
    assert SpaceGuard(tmp_path, 80, 0, usage).checked() == (tmp_path,)  # no payloads yet
