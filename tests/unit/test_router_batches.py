"""The runtime's batch path gives exactly what one record at a time gives (issue 19).

``KafkaSource.record_batches`` hands the router one list per partition and read; the
router hands each processor its runs of instances (``JobProcessor.on_batch``) and the AE
Title Job Processor pushes a run through its window as one list. Whatever the batch
boundaries, the ledger must get the same records, in the same order: random logs of
instances, clock ticks, re-published copies, covered inputs and key-less instances are
read record by record and in random batches, and the sinks compared.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from helpers.instances import RecordingSink, make_instance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.base import JobProcessor
from processors.contracts import ProcessorContext
from processors.exactly_once import CoveredInputs
from processors.runtime.router import InstanceRouter
from streams.events import ClockTick, GroupClosed, InputOffset, envelope
from streams.kafka import Record

T0 = 1_732_800_000_000
AE = "AET1"
TOPIC = "t.instances"

# One log entry: ("i", study or "" for no key, ms since the last entry) | ("t", ms) | ("d",)
_entry = st.one_of(
    st.tuples(st.just("i"), st.sampled_from(["S1", "S2", "S3", ""]), st.integers(0, 7000)),
    st.tuples(st.just("t"), st.integers(0, 9000)),
    st.tuples(st.just("d")),
)


def build_log(entries: list[tuple[Any, ...]]) -> list[Record]:
    """Kafka records of one partition: instances, ticks and re-published copies."""
    records: list[Record] = []
    now = T0
    for offset, entry in enumerate(entries):
        kind = entry[0]
        if kind == "d" and any(type(r.envelope.data) is not ClockTick for r in records):
            original = next(r for r in reversed(records) if type(r.envelope.data) is not ClockTick)
            records.append(Record(TOPIC, 0, offset, original.key, now, original.envelope))
            continue
        if kind == "t":
            now += entry[1]
            env = envelope(ClockTick(watermark=now), source="p", time_ms=now)
        else:
            study = entry[1] if kind == "i" else "S1"
            now += entry[2] if kind == "i" else 0
            inst = make_instance(received_at=now, ae=AE, study=study, sop=f"1.2.{offset}")
            env = envelope(inst, source="scp", time_ms=now, event_id=f"id-{offset}")
        records.append(Record(TOPIC, 0, offset, "k", now, env))
    return records


def covering(offsets: list[int]) -> CoveredInputs:
    """Inputs a closed group of an earlier run already holds."""
    covered = CoveredInputs()
    covered.add(
        GroupClosed(
            processor="p",
            ae_title=AE,
            group_by="(0020,000D)",
            group_key="old",
            reason="timeout",
            first_received_at=T0,
            last_received_at=T0,
            instances=(),
            inputs=tuple(InputOffset(0, o) for o in offsets),
            jobs=(),
        )
    )
    return covered


def run(
    tmp_path: Path, records: list[Record], cuts: list[int] | None, covered: list[int]
) -> tuple[RecordingSink, AeTitleJobProcessor, InstanceRouter]:
    """Feed ``records`` one by one (``cuts`` None) or in batches cut at ``cuts``."""
    scheduler = TestScheduler()
    sink = RecordingSink(scheduler)
    proc = AeTitleJobProcessor(
        AE, {"pipeline-a": "PA", "timeout": 5, "groupBy": "Study"}, sink, scheduler
    )
    asyncio.run(proc.start(ProcessorContext(storage=tmp_path, grace_ms=0, log_clock=True)))
    proc.set_covered(covering(covered))
    failures: list[BaseException] = []
    processors: dict[str, JobProcessor] = {AE: proc}
    router = InstanceRouter(
        processors,
        None,  # type: ignore[arg-type]  # the router never writes to the sink itself
        ready={0},
        covered=lambda: None,
        fail=failures.append,
    )
    if cuts is None:
        for record in records:
            router.on_next(record)
    else:
        bounds = [0, *sorted(set(cuts)), len(records)]
        for start, end in itertools.pairwise(bounds):
            if records[start:end]:
                router.on_batch(records[start:end])
    assert failures == []
    return sink, proc, router


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.lists(_entry, min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=8),
    covered=st.lists(st.integers(0, 59), max_size=6),
)
def test_batches_give_the_same_ledger_as_one_record_at_a_time(
    tmp_path: Path, entries: list[tuple[Any, ...]], cuts: list[int], covered: list[int]
) -> None:
    records = build_log(entries)
    one_sink, one_proc, one_router = run(tmp_path, records, None, covered)
    batch_sink, batch_proc, batch_router = run(tmp_path, records, cuts, covered)
    assert batch_sink.records == one_sink.records
    assert batch_sink.removed == one_sink.removed
    assert batch_sink.removed_inputs == one_sink.removed_inputs
    assert batch_proc.counters == one_proc.counters
    assert batch_proc.held_offsets() == one_proc.held_offsets()
    assert batch_router.duplicates == one_router.duplicates


def test_a_batch_closes_groups_at_its_ticks_not_at_its_end(tmp_path: Path) -> None:
    # study S1 at 0 and 1 s, a tick past its deadline, then S1 again: two groups, the
    # first closed by the tick in the middle of the batch, before the third instance
    records = build_log([("i", "S1", 0), ("i", "S1", 1000), ("t", 7000), ("i", "S1", 0)])
    sink, proc, _ = run(tmp_path, records, [], [])
    [record] = sink.records
    assert [i.offset for i in record.inputs] == [0, 1]
    assert proc.held_offsets() == {0: 3}
    assert proc.counters.instances == 3


def test_key_less_and_covered_instances_keep_their_place_in_a_batch(tmp_path: Path) -> None:
    records = build_log([("i", "S1", 0), ("i", "", 0), ("i", "S1", 0), ("t", 6000)])
    sink, proc, _ = run(tmp_path, records, [], covered=[2])
    assert [[i.offset for i in r.inputs] for r in sink.records] == [[0]]
    assert sink.removed_inputs == [(InputOffset(0, 1),)]  # reclaimed, consuming its input
    assert (proc.counters.covered, proc.counters.missing_key) == (1, 1)
