"""Accepting an export request: ids, destinations, paths that must stay under storage,
files that must be DICOM, and staging (hard links, one file per SOP instance)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.dicom import make_ct, write_instances

from processors.export.requests import (
    ExportRequestError,
    Upload,
    check_destinations,
    check_local_files,
    identify,
    request_id_of,
    stage,
)
from streams.config import AdapterConfig
from streams.storage.exports import export_dir

CONFIG = AdapterConfig.model_validate(
    {
        "export": {
            "destinations": [
                {"kind": "dicom", "name": "pacs", "ae_title": "P", "host": "h", "port": 104}
            ]
        }
    }
)


def test_request_ids_come_from_the_client_or_are_new() -> None:
    assert request_id_of("abc-1", None) == "abc-1" == request_id_of("abc-1", "abc-1")
    assert len(request_id_of(None, "")) == 36  # a uuid4
    with pytest.raises(ExportRequestError, match="differ"):
        request_id_of("a", "b")
    with pytest.raises(ExportRequestError, match="not valid"):
        request_id_of("../etc")


def test_destinations_must_be_configured_and_are_named_when_not() -> None:
    assert check_destinations(CONFIG, ["pacs", "pacs"]) == ("pacs",)
    with pytest.raises(
        ExportRequestError, match=r"unknown destination\(s\) nowhere; export.destinations has: pacs"
    ):
        check_destinations(CONFIG, ["pacs", "nowhere"])
    with pytest.raises(ExportRequestError, match="at least one"):
        check_destinations(CONFIG, [])


def test_files_named_by_path_must_resolve_inside_storage(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    inside = write_instances(storage / "AE", [make_ct()])[0]
    outside = write_instances(tmp_path / "out", [make_ct()])[0]
    (storage / "link").symlink_to(outside)
    assert [u.path for u in check_local_files(storage, [str(inside), f"file://{inside}"])] == [
        inside,
        inside,
    ]
    for bad in (
        str(outside),
        str(storage / ".." / "out" / outside.name),
        str(storage / "link"),
        "relative.dcm",
    ):
        with pytest.raises(ExportRequestError, match=r"files\[0\]"):
            check_local_files(storage, [bad])


def test_staging_links_each_instance_once_and_refuses_what_is_not_dicom(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    ct = make_ct()
    first, again = (
        write_instances(tmp_path / "a", [ct])[0],
        write_instances(tmp_path / "b", [ct])[0],
    )
    with pytest.raises(ExportRequestError, match=r"notes\.txt: not a DICOM Part 10 file"):
        identify([Upload("notes.txt", data=b"hello"), Upload("x", path=first)])
    files = stage(storage, "r1", identify([Upload("a", path=first), Upload("b", path=again)]))
    assert [f.sop_instance_uid for f in files] == [str(ct.SOPInstanceUID)]
    staged = Path(files[0].uri)
    assert staged.parent == export_dir(storage, "r1")
    assert os.stat(staged).st_ino == os.stat(first).st_ino  # a hard link, no bytes copied
