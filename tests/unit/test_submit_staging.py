"""Payload staging into <storage>/payloads/<job>/dcm/<patient>/<study>/<series>/<sop>.dcm."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from streams.events import GroupInstance
from streams.storage import StagingError, payload_dir, remove_payload, stage_payload
from tests.helpers.jobs import write_instances


def test_hard_links_every_instance_into_the_clara_layout(tmp_path: Path) -> None:
    instances = write_instances(tmp_path, series=("1.2.3.1.1", "1.2.3.1.2"))
    staged = stage_payload(tmp_path, "job-1", "PAT1", instances)
    assert staged.path == tmp_path / "payloads" / "job-1"
    assert (staged.linked, staged.copied, staged.kept) == (4, 0, 0)
    for source, target in zip(instances, staged.instances, strict=True):
        expected = (
            staged.path / "dcm" / "PAT1" / source.study_instance_uid
            / source.series_instance_uid / f"{source.sop_instance_uid}.dcm"
        )  # fmt: skip
        assert Path(target.uri) == expected
        assert os.path.samefile(source.uri, target.uri)
        assert target.sop_instance_uid == source.sop_instance_uid


def test_restaging_is_idempotent_and_survives_reclaimed_sources(tmp_path: Path) -> None:
    instances = write_instances(tmp_path)
    first = stage_payload(tmp_path, "job-1", "PAT1", instances)
    again = stage_payload(tmp_path, "job-1", "PAT1", instances)
    assert (again.linked, again.kept) == (0, 2)
    for instance in instances:
        Path(instance.uri).unlink()
    after = stage_payload(tmp_path, "job-1", "PAT1", instances)
    assert after.kept == 2 and after.instances == first.instances
    assert not list(first.path.rglob(".*.tmp"))


def test_copies_when_hard_links_cross_file_systems(tmp_path: Path) -> None:
    instances = write_instances(tmp_path)

    def no_cross_device_links(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), src)

    staged = stage_payload(tmp_path, "job-x", "PAT1", instances, link=no_cross_device_links)
    assert (staged.linked, staged.copied) == (0, 2)
    for source, target in zip(instances, staged.instances, strict=True):
        assert not os.path.samefile(source.uri, target.uri)
        assert Path(target.uri).read_bytes() == Path(source.uri).read_bytes()
    # a copy with the same size and mtime is recognised on re-staging
    assert stage_payload(tmp_path, "job-x", "PAT1", instances, link=no_cross_device_links).kept == 2


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
    reason="needs /dev/shm on another file system than /tmp",
)
def test_real_cross_file_system_staging(tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        instances = write_instances(Path(shm))
        storage = tmp_path  # payloads here, instances on tmpfs: os.link raises EXDEV
        staged = stage_payload(storage, "job-fs", "PAT1", instances)
        assert staged.copied == 2


def test_every_path_component_is_sanitised(tmp_path: Path) -> None:
    source = tmp_path / "in.dcm"
    source.write_bytes(b"x")
    evil = GroupInstance("../../etc/passwd", "..", "a/b", str(source))
    staged = stage_payload(tmp_path, "../job", "../../root", [evil])
    target = Path(staged.instances[0].uri).resolve()
    assert target.is_relative_to((tmp_path / "payloads").resolve())
    assert staged.path.parent == tmp_path / "payloads"
    assert ".." not in Path(staged.instances[0].uri).relative_to(tmp_path).parts


def test_duplicate_sop_instances_collapse_into_one_file(tmp_path: Path) -> None:
    instances = write_instances(tmp_path, per_series=1)
    staged = stage_payload(tmp_path, "job-1", "PAT1", instances * 3)
    assert len(staged.instances) == 1


def test_a_missing_source_is_a_permanent_error(tmp_path: Path) -> None:
    gone = GroupInstance("1.2", "1.3", "1.4", str(tmp_path / "AET1" / "gone.dcm"))
    with pytest.raises(StagingError, match="missing") as info:
        stage_payload(tmp_path, "job-1", "PAT1", [gone])
    assert info.value.retriable is False
    assert "PAT1" not in str(info.value)  # no PHI in the error that reaches events and logs


def test_other_os_errors_are_retriable(tmp_path: Path) -> None:
    instances = write_instances(tmp_path)

    def disk_full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)

    with pytest.raises(StagingError) as info:
        stage_payload(tmp_path, "job-1", "PAT1", instances, link=disk_full)
    assert info.value.retriable is True


def test_remove_payload_counts_only_bytes_really_freed(tmp_path: Path) -> None:
    instances = write_instances(tmp_path, size=100)
    stage_payload(tmp_path, "job-1", "PAT1", instances)
    Path(instances[0].uri).unlink()  # this payload file is now the only link
    files, freed = remove_payload(tmp_path, "job-1")
    assert (files, freed) == (2, 100)
    assert not payload_dir(tmp_path, "job-1").exists()
    assert remove_payload(tmp_path, "job-1") == (0, 0)
