"""The reclaimer's fold (what may go) and its file deletion (Clara case 35 semantics)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from processors.reclaim import ReclaimLedger, delete_instances, prune_empty_dirs
from streams.events import GroupInstance, InstancesRemoved, JobSubmitted
from streams.storage import stage_payload
from tests.helpers.jobs import env, group_closed, write_instances

KEY = "AET1/PAT1"


def _submitted(job_id: str, payload: str = "") -> JobSubmitted:
    return JobSubmitted(job_id, "n", "AET1", "p", "pid", "normal", payload, (), 1)


def test_a_group_is_ready_only_when_every_job_is_submitted() -> None:
    ledger = ReclaimLedger()
    instances = (GroupInstance("1", "s", "se", "/st/AET1/s/se/1.dcm"),)
    gc = group_closed(instances, jobs=[("a", "normal"), ("b", "lower")])
    assert ledger.apply(KEY, env(gc, 1, "g1")) == ()
    assert ledger.apply(KEY, env(_submitted("a"), 2)) == ()
    ready = ledger.apply(KEY, env(_submitted("b"), 3))
    assert [g.group_id for g in ready] == ["g1"]
    assert [g.group_id for g in ledger.ready()] == ["g1"]
    # the echo of a submitted event does not make it ready twice
    assert ledger.apply(KEY, env(_submitted("b"), 3)) == ()


def test_a_group_without_jobs_is_ready_at_once() -> None:
    ledger = ReclaimLedger()
    gc = group_closed([GroupInstance("1", "s", "se", "/x/1.dcm")], jobs=[], reason="ignored")
    ready = ledger.apply(KEY, env(gc, 1, "g-ignored"))
    assert [g.reason for g in ready] == ["ignored"]


def test_files_shared_with_an_unfinished_group_are_held() -> None:
    ledger = ReclaimLedger()
    shared = GroupInstance("1", "s", "se", "/st/AET1/s/se/1.dcm")
    own = GroupInstance("2", "s", "se", "/st/AET1/s/se/2.dcm")
    ledger.apply(KEY, env(group_closed([shared, own], jobs=[("a", "normal")]), 1, "g1"))
    ledger.apply(KEY, env(group_closed([shared], jobs=[("b", "normal")]), 2, "g2"))
    (g1,) = ledger.apply(KEY, env(_submitted("a"), 3))
    plan = ledger.plan(g1)
    assert plan.delete == (own,) and plan.held == (shared,)
    # once g1's removal is recorded and g2's job is submitted, g2 may delete the shared file
    ledger.apply(KEY, env(InstancesRemoved(("2",), group_event_id="g1"), 4))
    (g2,) = ledger.apply(KEY, env(_submitted("b"), 5))
    assert ledger.plan(g2).delete == (shared,)


def test_instances_removed_closes_a_group_for_good() -> None:
    ledger = ReclaimLedger()
    ledger.apply(KEY, env(group_closed([], jobs=[("a", "normal")]), 1, "g1"))
    ledger.apply(KEY, env(_submitted("a"), 2))
    ledger.apply(KEY, env(InstancesRemoved((), group_event_id="g1"), 3))
    assert list(ledger.ready()) == []


def test_payloads_expire_after_retention_and_only_once() -> None:
    ledger = ReclaimLedger()
    ledger.apply(KEY, env(_submitted("a", "/st/payloads/a"), 1_000))
    ledger.apply(KEY, env(_submitted("b", "/st/payloads/b"), 5_000))
    assert ledger.expired_payloads(now_ms=10_000, retention_ms=0) == []
    assert [e.job_id for e in ledger.expired_payloads(10_000, 6_000)] == ["a"]
    assert [e.job_id for e in ledger.expired_payloads(11_000, 6_000)] == ["a", "b"]
    ledger.apply(KEY, env(InstancesRemoved((), reason="payload_expired", job_ids=("a",)), 11_000))
    assert [e.job_id for e in ledger.expired_payloads(11_000, 6_000)] == ["b"]


def _touch(path: Path) -> GroupInstance:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 10)
    return GroupInstance(path.stem, "s", "se", str(path))


def test_clara_case_35_empty_folders_are_pruned_up_to_the_root(tmp_path: Path) -> None:
    """SpaceReclaimerServiceTest.ShallDeleteDirectoriesIfEmpty, under our storage root."""
    root = tmp_path / "payloads-root"
    files = [
        "dir1/dir1.1/file1",
        "dir1/dir1.2/file2",
        "dir1/dir1.2/file3",  # not queued: keeps dir1.2 and dir1
        "dir1/dir1.3/file4",
        "dir2/dir2.1/dir2.1.1/file5",
    ]
    made = {name: _touch(root / name) for name in files}
    queued = [inst for name, inst in made.items() if name != "dir1/dir1.2/file3"]
    result = delete_instances(root, queued)
    assert len(result.removed) == 4 and result.bytes_freed == 40
    assert not (root / "dir1" / "dir1.1").exists()
    assert not (root / "dir1" / "dir1.3").exists()
    assert not (root / "dir2").exists()
    assert (root / "dir1" / "dir1.2" / "file3").exists()
    assert root.is_dir()


def test_the_storage_root_itself_is_never_removed(tmp_path: Path) -> None:
    only = _touch(tmp_path / "AET1" / "s" / "se" / "1.dcm")
    delete_instances(tmp_path, [only])
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
    prune_empty_dirs(tmp_path, tmp_path)
    assert tmp_path.is_dir()


def test_paths_outside_storage_or_inside_payloads_are_refused(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    outside = _touch(tmp_path / "elsewhere" / "x.dcm")
    _touch(storage / "AET1" / "x.dcm")  # a real file the relative URI would name
    sneaky = GroupInstance(
        "y", "s", "se", str(storage / "AET1" / ".." / ".." / "elsewhere" / "x.dcm")
    )
    relative = GroupInstance("z", "s", "se", "AET1/x.dcm")
    payload = _touch(storage / "payloads" / "job" / "dcm" / "p.dcm")
    link_dir = storage / "AET1" / "link"
    os.symlink(tmp_path / "elsewhere", link_dir)
    via_link = GroupInstance("w", "s", "se", str(link_dir / "x.dcm"))
    result = delete_instances(storage, [outside, sneaky, relative, payload, via_link])
    assert len(result.refused) == 5 and result.removed == ()
    assert Path(outside.uri).exists() and Path(payload.uri).exists()


def test_a_file_written_again_after_its_group_closed_is_kept(tmp_path: Path) -> None:
    old = _touch(tmp_path / "AET1" / "s" / "se" / "old.dcm")
    resent = _touch(tmp_path / "AET1" / "s" / "se" / "resent.dcm")
    closed_at_ms = int(time.time() * 1000) - 60_000  # the group's last instance, 1 min ago
    long_ago = (closed_at_ms - 1_000) / 1000
    os.utime(old.uri, (long_ago, long_ago))
    result = delete_instances(tmp_path, [old, resent], not_after_ms=closed_at_ms)
    assert result.removed == (old,) and result.rewritten == (resent,)
    assert Path(resent.uri).exists()


def test_files_already_gone_count_as_removed_and_hard_links_free_nothing(tmp_path: Path) -> None:
    instances = write_instances(tmp_path, per_series=2, size=100)
    stage_payload(tmp_path, "job-1", "PAT1", instances[:1])  # first file also in a payload
    Path(instances[1].uri).unlink()
    result = delete_instances(tmp_path, instances)
    assert result.removed == tuple(instances)
    assert result.bytes_freed == 0  # one still linked from the payload, one already gone
    assert not (tmp_path / "AET1").exists()
    assert (tmp_path / "payloads" / "job-1").is_dir()


def test_removal_request_is_a_group_without_jobs_that_is_ready_at_once() -> None:
    from processors.reclaim import removal_request
    from streams.events import InputOffset, InstanceReceived

    def received(sop: str, at: int) -> InstanceReceived:
        return InstanceReceived(
            "AET1", "MOD", "127.0.0.1", "a1", "1.2.840.10008.5.1.4.1.1.2", sop,
            "1.2.840.10008.1.2.1", "PAT1", "1.2", "1.2.1", at, f"/st/AET1/1.2/1.2.1/{sop}.dcm", 10,
        )  # fmt: skip

    request = removal_request(
        processor="aetitle",
        ae_title="AET1",
        instances=[received("9.1", 5_000), received("9.2", 7_000)],
        inputs=[InputOffset(0, 41), InputOffset(0, 42)],
        reason="missing-group-key",
    )
    assert request.jobs == () and request.reason == "missing-group-key"
    assert (request.first_received_at, request.last_received_at) == (5_000, 7_000)
    assert [i.uri for i in request.instances] == [
        "/st/AET1/1.2/1.2.1/9.1.dcm",
        "/st/AET1/1.2/1.2.1/9.2.dcm",
    ]
    ready = ReclaimLedger().apply(KEY, env(request, 8_000, "req-1"))
    assert [g.reason for g in ready] == ["missing-group-key"]
