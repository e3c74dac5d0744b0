"""The cache's SQLite store: idempotent last-wins adds, listings, claims, durability."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from helpers.instances import make_instance

from processors.cache import Added, CacheStore, ClaimConflictError, database_path
from processors.cache.schema import CacheDatabaseError
from processors.cache.store import JOB, REMOVAL
from streams.events import InputOffset

Pos = InputOffset


@pytest.fixture
def store(tmp_path: Path) -> CacheStore:
    return CacheStore(tmp_path / "c.sqlite3")


def test_a_new_file_is_not_ready_until_marked_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "c.sqlite3"
    first = CacheStore(path)
    assert not first.ready
    first.add(make_instance(received_at=1, sop="1.1"), Pos(0, 0))
    first.mark_ready()
    first.close()
    again = CacheStore(path)
    assert again.ready
    assert again.state_of("1.1") == "cached"
    assert again.overview().instances == 1
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_database_path_sanitises_the_ae_title(tmp_path: Path) -> None:
    assert database_path(tmp_path, "CT_1") == tmp_path / ".cache" / "CT_1.sqlite3"
    odd = database_path(tmp_path, "../x y")
    assert odd.parent == tmp_path / ".cache"
    assert "/" not in odd.name and not odd.name.startswith(".")


def test_replaying_a_position_changes_nothing(store: CacheStore) -> None:
    inst = make_instance(received_at=10, sop="1.1")
    assert store.add(inst, Pos(0, 5)).added is Added.INSERTED
    assert store.add(inst, Pos(0, 5)).added is Added.UNCHANGED
    assert store.overview().instances == 1


def test_last_copy_wins_and_an_older_file_is_reported_superseded(store: CacheStore) -> None:
    old = make_instance(received_at=10, sop="1.1", uri="/s/a.dcm", study="S1")
    new = make_instance(received_at=20, sop="1.1", uri="/s/b.dcm", study="S2")
    store.add(old, Pos(0, 5))
    outcome = store.add(new, Pos(0, 9))
    assert outcome.added is Added.REPLACED
    assert outcome.superseded is not None and outcome.superseded.uri == "/s/a.dcm"
    assert outcome.superseded.study_instance_uid == "S1"
    # A replay of the older copy does not bring it back.
    assert store.add(old, Pos(0, 5)).added is Added.UNCHANGED
    [cached] = store.cached_instances(["S2"])
    assert cached.instance.uri == "/s/b.dcm" and cached.position == Pos(0, 9)
    assert store.cached_instances(["S1"]) == []


def test_a_newer_copy_in_the_same_file_supersedes_nothing(store: CacheStore) -> None:
    store.add(make_instance(received_at=10, sop="1.1", uri="/s/a.dcm"), Pos(1, 0))
    outcome = store.add(make_instance(received_at=20, sop="1.1", uri="/s/a.dcm"), Pos(1, 1))
    assert outcome.added is Added.REPLACED and outcome.superseded is None


def test_across_partitions_the_later_received_copy_wins(store: CacheStore) -> None:
    store.add(make_instance(received_at=20, sop="1.1", uri="/s/new.dcm"), Pos(1, 0))
    older = make_instance(received_at=10, sop="1.1", uri="/s/old.dcm")
    assert store.add(older, Pos(2, 50)).added is Added.UNCHANGED
    assert store.cached_instances(["S1"])[0].instance.uri == "/s/new.dcm"


def test_instances_keep_every_event_field(store: CacheStore) -> None:
    inst = make_instance(received_at=10, sop="1.1", tags={"00080060": "CT"})
    store.add(inst, Pos(3, 7))
    [cached] = store.cached_instances(["S1"])
    assert cached.instance == inst
    assert cached.position == Pos(3, 7)


def listing_store(store: CacheStore) -> None:
    # P1: S1 (Se1 x2, Se2 x1), S2 (Se3 x1); P2: S3 (Se4 x1)
    rows = [
        ("P1", "S1", "Se1", 100), ("P1", "S1", "Se1", 300), ("P1", "S1", "Se2", 200),
        ("P1", "S2", "Se3", 50), ("P2", "S3", "Se4", 400),
    ]  # fmt: skip
    for i, (patient, study, series, at) in enumerate(rows):
        inst = make_instance(received_at=at, patient=patient, study=study, series=series)
        store.add(inst, Pos(0, i))


def test_listings_count_and_time_each_level(store: CacheStore) -> None:
    listing_store(store)
    patients = store.patients()
    assert patients.total == 2
    p1, p2 = patients.items
    assert (p1.patient_id, p1.studies, p1.series, p1.counts.instances) == ("P1", 2, 3, 4)
    c1 = p1.counts
    assert (c1.first_received_at, c1.last_received_at, c1.size) == (50, 300, 4 * 1024)
    assert (p2.patient_id, p2.studies, p2.series, p2.counts.instances) == ("P2", 1, 1, 1)
    studies = store.studies()
    assert [(s.study_instance_uid, s.series, s.counts.instances) for s in studies.items] == [
        ("S1", 2, 3), ("S2", 1, 1), ("S3", 1, 1),
    ]  # fmt: skip
    assert [s.study_instance_uid for s in store.studies(patient_id="P2").items] == ["S3"]
    series = store.series(study_uid="S1")
    listed = [(s.series_instance_uid, s.counts.instances) for s in series.items]
    assert listed == [("Se1", 2), ("Se2", 1)]
    assert series.total == 2
    detail = store.study("S1")
    assert detail is not None and detail.study.counts.instances == 3
    assert [s.series_instance_uid for s in detail.series] == ["Se1", "Se2"]
    assert store.study("nope") is None
    o = store.overview()
    assert (o.patients, o.studies, o.series, o.instances) == (2, 3, 4, 5)


def test_pages_are_stable_and_total_counts_everything(store: CacheStore) -> None:
    listing_store(store)
    first = store.studies(limit=2, offset=0)
    second = store.studies(limit=2, offset=2)
    assert first.total == second.total == 3
    uids = [s.study_instance_uid for s in (*first.items, *second.items)]
    assert uids == ["S1", "S2", "S3"]
    assert store.studies(limit=2, offset=10).items == ()


def test_claim_confirm_releases_and_a_replay_does_not_list_them_again(store: CacheStore) -> None:
    listing_store(store)
    cached = store.cached_instances(["S1"])
    uids = [c.instance.sop_instance_uid for c in cached]
    store.claim("job-1", JOB, b"{}", uids, now_ms=1000)
    assert [s.study_instance_uid for s in store.studies().items] == ["S2", "S3"]
    assert [c.claim_id for c in store.pending_claims()] == ["job-1"]
    assert store.confirm("job-1", now_ms=2000) == 3
    assert store.pending_claims() == []
    assert {store.state_of(u) for u in uids} == {"released"}
    for c in cached:  # the runtime replays the inputs (e.g. after a crash before a commit)
        assert store.add(c.instance, c.position).added is Added.UNCHANGED
    assert store.study("S1") is None


def test_a_re_sent_instance_after_release_is_cached_again(store: CacheStore) -> None:
    inst = make_instance(received_at=10, sop="1.1")
    store.add(inst, Pos(0, 0))
    store.claim("r-1", REMOVAL, b"{}", ["1.1"], now_ms=1)
    store.confirm("r-1", now_ms=2)
    again = make_instance(received_at=50, sop="1.1")
    outcome = store.add(again, Pos(0, 9))
    assert outcome.added is Added.REPLACED and outcome.superseded is None
    assert store.state_of("1.1") == "cached"


def test_abandon_lists_the_instances_again(store: CacheStore) -> None:
    listing_store(store)
    uids = [c.instance.sop_instance_uid for c in store.cached_instances(["S2"])]
    store.claim("job-2", JOB, b"{}", uids, now_ms=1)
    store.abandon("job-2")
    assert store.study("S2") is not None
    assert store.pending_claims() == []


def test_a_conflicting_claim_changes_nothing(store: CacheStore) -> None:
    listing_store(store)
    s1 = [c.instance.sop_instance_uid for c in store.cached_instances(["S1"])]
    s2 = [c.instance.sop_instance_uid for c in store.cached_instances(["S2"])]
    store.claim("a", JOB, b"{}", s1, now_ms=1)
    with pytest.raises(ClaimConflictError, match="no longer cached"):
        store.claim("b", JOB, b"{}", s1[:1] + s2, now_ms=1)
    assert store.study("S2") is not None  # b's partial update was rolled back
    with pytest.raises(ClaimConflictError, match="already recorded"):
        store.claim("a", JOB, b"{}", s2, now_ms=1)
    assert [c.claim_id for c in store.pending_claims()] == ["a"]


def test_released_rows_stored_by_a_rebuild_and_pruned_later(store: CacheStore) -> None:
    inst = make_instance(received_at=10, sop="1.1")
    store.add_many([(inst, Pos(0, 0), "consumed")], now_ms=1000)
    assert store.state_of("1.1") == "released"
    assert store.add(inst, Pos(0, 0)).added is Added.UNCHANGED
    assert store.prune_released(before_ms=1000) == 0
    assert store.prune_released(before_ms=1001) == 1
    assert store.state_of("1.1") is None


def test_a_database_of_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    CacheStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(CacheDatabaseError, match=r"schema 99.*move it away"):
        CacheStore(path)


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(CacheDatabaseError) as info:
        CacheStore(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
