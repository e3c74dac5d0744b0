"""The AE Title Job Processor on the bus clock (issue 14/15): records carry their log
time, only ``clock.tick`` watermarks close groups, max age caps a group, an operator can
force a group closed -- all functions of the log, no timer."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.contracts import ProcessorContext
from processors.jobnames import group_id
from streams.events import GroupCloseRequested, InstanceReceived

T0 = 1_732_800_000_000
S = 1000
AE = "AET1"


def processor(tmp_path: Path, **settings: object) -> tuple[RecordingSink, AeTitleJobProcessor]:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    raw = {"pipeline-a": "PA", "timeout": 5, **settings}
    proc = AeTitleJobProcessor(AE, raw, sink, sched)
    asyncio.run(proc.start(ProcessorContext(storage=tmp_path, grace_ms=0, log_clock=True)))
    return sink, proc


def feed(proc: AeTitleJobProcessor, offset: int, time: int, inst: InstanceReceived) -> None:
    proc.on_next((0, offset, inst, time))


def test_records_join_their_group_whatever_their_time_and_only_ticks_close(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path)
    # A source's clock says anything: the log time (the broker's) is what counts.
    feed(proc, 0, T0, make_instance(received_at=T0 + 20 * S, study="S1"))
    feed(proc, 1, T0 + 9 * S, make_instance(received_at=T0 - 20 * S, study="S1"))
    assert sink.closed == []  # 9 s after the first record, but no tick has passed it
    assert proc.next_due(0) == T0 + 5 * S  # (an early heap entry is fine)
    proc.on_watermark(0, T0 + 14 * S)  # exactly the deadline: not passed
    assert sink.closed == []
    proc.on_watermark(0, T0 + 14 * S + 1)
    (record,) = sink.records
    assert [i.offset for i in record.inputs] == [0, 1]
    assert (record.first_received_at, record.last_received_at) == (T0, T0 + 9 * S)
    assert record.reason == "timeout"
    assert record.jobs[0].name.endswith("132014")  # named by the deadline, in bus time


def test_a_tick_past_the_deadline_before_the_next_record_splits(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path)
    feed(proc, 0, T0, make_instance(received_at=T0, study="S1"))
    proc.on_watermark(0, T0 + 6 * S)
    feed(proc, 1, T0 + 7 * S, make_instance(received_at=T0, study="S1"))
    proc.on_watermark(0, T0 + 13 * S)
    assert [len(r.instances) for r in sink.records] == [1, 1]


def test_max_age_closes_a_group_that_never_goes_quiet(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path, maxAge=20)
    for n in range(14):  # an instance every 3 s for 40 s: never quiet for 5 s
        time = T0 + 3 * n * S
        proc.on_watermark(0, time - 1)
        feed(proc, n, time, make_instance(received_at=time, study="XA"))
    first, second = sink.records[0], None
    assert first.reason == "max_age"
    assert (first.first_received_at, len(first.instances)) == (T0, 7)  # 0..18 s
    assert first.jobs[0].name.endswith("132020")  # due at first + 20 s
    proc.on_watermark(0, T0 + 50 * S)
    second = sink.records[1]
    assert second.first_received_at == T0 + 21 * S  # later instances start a new group
    assert sum(len(r.instances) for r in sink.records) == 14


def test_an_operator_closes_a_group_by_its_id_once(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path)
    feed(proc, 7, T0, make_instance(received_at=T0, study="S1"))
    feed(proc, 8, T0 + S, make_instance(received_at=T0, study="S2"))
    ((gid, view), (other, _)) = proc.groups([0])
    assert gid == group_id(AE, 0, 7) and view.instances == 1 and other != gid
    request = GroupCloseRequested(gid, AE, requested_by="op@host")
    assert proc.close_requested(0, request) == "closed"
    (record,) = sink.records
    assert (record.reason, record.group_key) == ("forced", "S1")
    assert proc.close_requested(0, request) == "unknown"  # a second request: a no-op
    assert len(sink.records) == 1
    assert [g for g, _ in proc.groups([0])] == [other]


def test_the_head_of_the_open_groups_is_the_oldest_and_counts_them_all(tmp_path: Path) -> None:
    _, proc = processor(tmp_path)
    for n, study in enumerate(["S1", "S2", "S1", "S3", "S4"]):
        feed(proc, n, T0 + n * S, make_instance(received_at=T0, study=study))
    every = proc.open_groups_on(0)
    assert [g.group_key for g in every] == ["S1", "S2", "S3", "S4"]  # oldest first
    assert every[0].instances == 2
    assert proc.open_groups_head(0, 2) == (every[:2], 4)
    assert proc.open_groups_head(0, 10) == (every, 4)
    assert proc.open_groups_head(1, 2) == ((), 0)  # a partition with nothing open
