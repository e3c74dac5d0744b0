"""Open groups as the bus says them (issue 15): folding ``groups.open`` records, when an
owner says them again, throughput per minute and the terminal view -- all pure."""

from __future__ import annotations

from rich.console import Console

from processors.groups import find, latest, row_fields, rows
from processors.groups.announce import Announcements, Listing
from processors.groups.throughput import throughput
from processors.groups.view import STALE_AFTER_MS
from processors.groups.watch import Screen, render
from processors.submit.state import fold
from streams.events import (
    GroupClosed,
    GroupInstance,
    GroupsOpen,
    InputOffset,
    JobFailed,
    JobSpec,
    OpenGroupInfo,
    envelope,
)

NOW = 1_800_000_030_000  # 30 s into a minute


def info(gid: str, key: str = "1.2.3", n: int = 1, first: int = NOW - 10_000) -> OpenGroupInfo:
    return OpenGroupInfo(gid, "(0010,0020)", key, n, first, first + 1000, first + 61_000)


def snap(partition: int, *groups: OpenGroupInfo, owner: str = "a", at: int = NOW) -> GroupsOpen:
    return GroupsOpen("AE", "p.instances", partition, owner, at, groups)


def test_the_latest_list_of_each_partition_wins_and_each_group_shows_once() -> None:
    old = snap(0, info("g1"), info("g2"), owner="dead", at=NOW - 60_000)
    new = snap(0, info("g2", n=3), owner="b")  # a new owner took partition 0 over
    other = snap(1, info("g3", first=NOW - 20_000))
    found = rows(latest(envelope(s, source="x", time_ms=1) for s in (old, other, new)), NOW)
    assert [(r.group_id, r.owner, r.group.instances) for r in found] == [
        ("g3", "a", 1),  # oldest first
        ("g2", "b", 3),
    ]
    assert find(found, "g1") is None and rows(latest([]), NOW) == []


def test_a_list_whose_owner_fell_silent_is_marked_stale_not_dropped() -> None:
    snaps = {"k": snap(0, info("g1"), at=NOW - STALE_AFTER_MS - 1)}
    (row,) = rows(snaps, NOW)
    assert row.stale
    assert rows({"k": snap(0, info("g1"), at=NOW - STALE_AFTER_MS)}, NOW)[0].stale is False
    assert rows(snaps, NOW, ae_title="OTHER") == []


def test_the_json_of_a_group_hides_the_key_unless_asked() -> None:
    (row,) = rows({"k": snap(0, info("g1", key="PATIENT-7"))}, NOW)
    fields = row_fields(row, NOW)
    assert fields["group_key"] == "<redacted>"
    assert fields["age_ms"] == 10_000 and fields["due_in_ms"] == 51_000
    assert row_fields(row, NOW, show_phi=True)["group_key"] == "PATIENT-7"


def test_a_list_is_said_when_it_changes_when_newly_owned_and_as_a_keepalive() -> None:
    state = Announcements("me", keepalive_ms=5_000)
    where = ("AE", "p.instances", 0)
    first = state.due(NOW, {where: Listing.of([info("g1")])})
    assert [(r.partition, len(r.groups), r.owner) for r in first] == [(0, 1, "me")]
    state.said(first)
    assert state.due(NOW + 100, {where: Listing.of([info("g1")])}) == []  # unchanged
    assert len(state.due(NOW + 200, {where: Listing.of([info("g1", n=2)])})) == 1  # grew
    assert len(state.due(NOW + 5_000, {where: Listing.of([info("g1")])})) == 1  # keepalive
    state.said(state.due(NOW + 5_000, {where: Listing.of([])}))  # closed: an empty list is said
    assert state.due(NOW + 5_100, {where: Listing.of([])}) == []
    assert state.due(NOW + 5_200, {}) == []  # no longer owned: forgotten
    assert len(state.due(NOW + 5_300, {where: Listing.of([])})) == 1  # owned again: said at once


def test_a_record_holds_at_most_max_groups_and_counts_the_rest() -> None:
    state = Announcements("me", max_groups=2)
    (record,) = state.due(NOW, {("AE", "t", 0): Listing.of([info(f"g{n}") for n in range(5)])})
    assert [g.group_id for g in record.groups] == ["g0", "g1"] and record.truncated == 3


def _closed(time_ms: int, instances: int, jobs: int) -> object:
    group = GroupClosed(
        "p", "AE", "(0020,000D)", "1.2", "timeout", 1, 2,
        tuple(GroupInstance(f"s{n}", "1.2", "1.2.3", f"/f{n}") for n in range(instances)),
        (InputOffset(0, 1),),
        tuple(JobSpec(f"j{n}", "n", "lung", "p", "normal") for n in range(jobs)),
    )  # fmt: skip
    return envelope(group, source="s", time_ms=time_ms)


def test_throughput_counts_per_minute_over_the_last_hour() -> None:
    events = [
        _closed(NOW - 30_000, 3, 2),  # this minute
        _closed(NOW - 61_000, 1, 1),  # the minute before
        _closed(NOW - 3_700_000, 9, 9),  # over an hour ago: not counted
        envelope(JobFailed("j0", 1, "x", True), source="s", time_ms=NOW - 1_000),
    ]
    buckets = throughput(events, NOW)  # type: ignore[arg-type]
    assert len(buckets) == 60 and buckets[-1].start <= NOW < buckets[-1].start + 60_000
    assert sum(b.instances for b in buckets) == 4 and sum(b.jobs for b in buckets) == 3
    assert buckets[-1].failed == 1


def test_the_terminal_view_shows_groups_jobs_and_dead_letters_without_keys() -> None:
    (row,) = rows({"k": snap(0, info("g-open", key="PATIENT-7", n=4))}, NOW)
    ledger = fold([("k", _closed(NOW - 5_000, 2, 1))])  # type: ignore[list-item]
    console = Console(record=True, width=200)
    console.print(render(Screen(NOW, [row], list(ledger), throughput([], NOW))))
    text = console.export_text()
    assert "g-open" in text and "PATIENT-7" not in text and "51s" in text
    assert "j0" in text and "lung" in text and "dead letters (0)" in text


def test_an_auditor_reading_groups_open_sees_no_group_key() -> None:
    from processors.commands.events import short_fields
    from processors.redact import redact_envelope
    from streams.events import to_dict

    env = envelope(snap(2, info("g1", key="PATIENT-7")), source="p", time_ms=NOW)
    assert "PATIENT-7" not in str(redact_envelope(to_dict(env)))
    assert dict(short_fields(env)) == {
        "ae": "AE", "partition": "p.instances[2]", "owner": "a", "open": 1,
    }  # fmt: skip


def test_a_cut_listing_is_said_when_only_its_count_changes() -> None:
    state = Announcements("me", max_groups=2)
    where = ("AE", "t", 0)
    head = [info("g0"), info("g1")]
    (record,) = state.due(NOW, {where: Listing(head, 5)})
    assert record.truncated == 3
    state.said([record])
    assert state.due(NOW + 100, {where: Listing(list(head), 5)}) == []  # nothing visible moved
    (again,) = state.due(NOW + 200, {where: Listing(head, 6)})  # one more behind the head
    assert again.truncated == 4
