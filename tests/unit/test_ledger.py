"""Pure exactly-once logic: covered inputs, safe commits, ledger resume positions.

The property tests play a processor that "crashes" at random instants: each run holds
the first offset of every open group in a real ``CommitTracker`` (as the Kafka bridge
does), writes ``group.closed`` records to an in-memory ledger (synchronously
acknowledged, then releases the hold), commits the tracker's safe offsets at random
moments with the ledger position :func:`resume_positions` asks for, and loses all memory
at the crash. The next run starts from the commits, rebuilds :class:`CoveredInputs` from
the ledger and replays. Every keyed instance must end in exactly one group, no job id
twice; with event-time closing only, the records equal one uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Sequence

import reactivex
from helpers.instances import make_instance
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor, AeTitleSettings
from processors.aetitle.settings import PATIENT_ID
from processors.exactly_once import (
    CoveredInputs,
    covered_inputs,
    held_input,
    resume_positions,
    skip_covered,
)
from streams.events import GroupClosed, InputOffset, InstanceReceived
from streams.kafka.commits import CommitTracker


def closed(*inputs: tuple[int, int]) -> GroupClosed:
    return GroupClosed(
        processor="AE Title Job Processor",
        ae_title="AET1",
        group_by="(0020,000D)",
        group_key="S1",
        reason="timeout",
        first_received_at=0,
        last_received_at=0,
        instances=(),
        inputs=tuple(InputOffset(p, o) for p, o in inputs),
        jobs=(),
    )


def test_covered_inputs_per_partition() -> None:
    records = [closed((0, 1), (0, 3)), closed((1, 7)), closed((2, 0))]
    assert covered_inputs(records) == {0: frozenset({1, 3}), 1: frozenset({7}), 2: frozenset({0})}
    covered = CoveredInputs.from_records(records, partitions=[0, 1])
    assert covered.covers(0, 3) and covered.covers(1, 7)
    assert not covered.covers(0, 2) and not covered.covers(2, 0)
    covered.prune(0, below=2)
    assert covered.offsets(0) == {3} and len(covered) == 2
    covered.drop([1])
    assert not covered.covers(1, 7) and len(covered) == 1


def test_skip_covered_filter() -> None:
    covered = CoveredInputs.from_records([closed((0, 1))])
    out: list[tuple[int, int, str]] = []
    reactivex.from_iterable([(0, 0, "a"), (0, 1, "b"), (1, 1, "c")]).pipe(
        skip_covered(covered)
    ).subscribe(out.append)
    assert out == [(0, 0, "a"), (1, 1, "c")]


def test_held_input_is_the_first_input() -> None:
    assert held_input(closed((0, 5), (0, 7))) == InputOffset(0, 5)
    assert held_input(closed()) is None


def test_resume_positions_keep_records_with_inputs_at_or_after_the_commit() -> None:
    written = [
        (0, 100, closed((0, 1), (0, 2))),  # all below commit 5 of partition 0: not needed
        (0, 101, closed((0, 3), (0, 9))),  # 9 >= 5: the replay meets offset 9 again
        (1, 50, closed((1, 4))),  # 4 >= commit 4 of partition 1
        (1, 40, closed((0, 6), (1, 1))),  # partition 0 needs it (6 >= 5), partition 1 not
        (0, 102, closed((2, 8))),  # partition 2 is not being committed
    ]
    assert resume_positions(written, {0: 5, 1: 4}) == {0: {0: 101, 1: 40}, 1: {1: 50}}


# -- crash and replay ----------------------------------------------------------------

CFG = AeTitleSettings(
    group_by=PATIENT_ID, priority="normal", timeout_s=5, pipelines=(("a", "A"), ("b", "B"))
)
Item = tuple[int, int, InstanceReceived]


@st.composite
def logs(draw: st.DrawFn) -> list[Item]:
    partitions = draw(st.integers(min_value=1, max_value=3))
    n = draw(st.integers(min_value=1, max_value=50))
    offsets = dict.fromkeys(range(partitions), 0)
    t = 0
    items: list[Item] = []
    for _ in range(n):
        t += draw(st.integers(min_value=0, max_value=7000))
        p = draw(st.integers(min_value=0, max_value=partitions - 1))
        patient = draw(st.sampled_from(["P1", "P2", "P3", "P4", ""]))  # "" = no group key
        jitter = draw(st.sampled_from([0, 0, 0, -3000, -8000]))  # SCP clock skew
        inst = make_instance(received_at=max(0, t + jitter), patient=patient)
        items.append((p, offsets[p], inst))
        offsets[p] += 1
    return items


class Run:
    """One processor lifetime: consumes from the committed offsets until it 'crashes'."""

    def __init__(self, ledger: list[GroupClosed], covered: CoveredInputs | None) -> None:
        self.sched = TestScheduler()
        self.ledger = ledger
        self.tracker: CommitTracker[int] = CommitTracker()
        self.processor = AeTitleJobProcessor(
            "AET1", {}, self, self.sched, settings=CFG, grace_ms=0, caught_up=False
        )
        self.processor.set_covered(covered)
        self.processor.set_offset_holder(self.tracker)

    def consume(self, item: Item) -> None:
        """What the Kafka bridge does per record: on_next, then mark it done."""
        self.processor.on_next(item)
        self.tracker.mark_done(item[0], item[1])

    # JobSink: the ledger write is acknowledged synchronously here.
    def group_closed(self, record: GroupClosed) -> None:
        self.ledger.append(record)
        held = held_input(record)
        assert held is not None and self.tracker.release(held.partition, held.offset)

    def remove_instances(self, ae_title: str, instances: Sequence[object], reason: str) -> None:
        return None

    def flush(self, partitions: Sequence[int]) -> None:
        """Catch up with every partition and let the wall clock close what is left."""
        for p in partitions:
            self.processor.partition_caught_up(p)
        self.sched.start()


def uninterrupted(items: list[Item]) -> list[GroupClosed]:
    ledger: list[GroupClosed] = []
    run = Run(ledger, None)
    for item in items:
        run.consume(item)
    run.flush(sorted({p for p, _, _ in items}))
    return ledger


def commit_now(run: Run, ledger: list[GroupClosed], state: Progress) -> None:
    """Commit the tracker's safe offsets with the ledger position to resume at."""
    for p, offset in run.tracker.committable().items():
        state.commits[p] = max(state.commits.get(p, 0), offset)
    written = [(0, position, record) for position, record in enumerate(ledger)]
    needed = resume_positions(written, state.commits)
    for p in state.commits:  # metadata travels with a commit; uncommitted: none
        state.metadata[p] = needed.get(p, {}).get(0, len(ledger))


class Progress:
    """What survives a crash: committed offsets and their metadata (ledger position)."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.commits: dict[int, int] = {}
        self.metadata: dict[int, int] = {}

    def restart(self, ledger: list[GroupClosed]) -> Run:
        # A partition never committed must read the whole ledger (position 0).
        start = min((self.metadata.get(p, 0) for p in self.partitions), default=0)
        return Run(ledger, CoveredInputs.from_records(ledger[start:], self.partitions))

    def todo(self, items: list[Item]) -> list[Item]:
        return [i for i in items if i[1] >= self.commits.get(i[0], 0)]


def crash_and_replay(
    items: list[Item], data: st.DataObject, *, wall_clock: bool
) -> list[GroupClosed]:
    """Runs that crash at drawn instants, then one that finishes; returns the ledger."""
    ledger: list[GroupClosed] = []
    state = Progress(sorted({p for p, _, _ in items}))
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        run = state.restart(ledger)
        todo = state.todo(items)
        crash_at = data.draw(st.integers(min_value=0, max_value=len(todo)))
        for item in todo[:crash_at]:
            if wall_clock:  # the consumer lags by a drawn delay; caught up or not
                tick = item[2].received_at / 1000 + data.draw(st.sampled_from([0, 1, 4, 9]))
                run.sched.advance_to(max(run.sched.clock, tick))
                if data.draw(st.booleans()):
                    run.processor.partition_caught_up(item[0], data.draw(st.booleans()))
            run.consume(item)
            if data.draw(st.booleans()):
                commit_now(run, ledger, state)
        # killed here: everything in memory is lost
    run = state.restart(ledger)
    for item in state.todo(items):
        run.consume(item)
    run.flush(state.partitions)
    return ledger


def assert_exactly_once(ledger: list[GroupClosed], items: list[Item]) -> None:
    job_ids = [job.job_id for record in ledger for job in record.jobs]
    assert len(job_ids) == len(set(job_ids))
    inputs = [(i.partition, i.offset) for record in ledger for i in record.inputs]
    keyed = [(p, o) for p, o, inst in items if inst.patient_id]
    assert sorted(inputs) == sorted(keyed)  # every keyed instance in exactly one group


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_crash_at_any_instant_yields_the_same_jobs_exactly_once(
    items: list[Item], data: st.DataObject
) -> None:
    """Event-time closing only: the crashed runs form exactly the uninterrupted groups."""
    ledger = crash_and_replay(items, data, wall_clock=False)
    assert sorted(ledger, key=repr) == sorted(uninterrupted(items), key=repr)
    assert_exactly_once(ledger, items)


@settings(max_examples=200, deadline=None)
@given(logs(), st.data())
def test_crash_with_wall_clock_closing_still_yields_every_job_exactly_once(
    items: list[Item], data: st.DataObject
) -> None:
    """Wall-clock closing depends on timing, so groups may differ -- never duplicate."""
    assert_exactly_once(crash_and_replay(items, data, wall_clock=True), items)


def test_a_skipped_covered_input_still_advances_the_event_clock() -> None:
    ledger: list[GroupClosed] = []
    run = Run(ledger, CoveredInputs.from_records([closed((0, 1))]))
    run.consume((0, 0, make_instance(received_at=0, patient="P1")))
    run.consume((0, 1, make_instance(received_at=20_000, patient="P2")))
    assert [record.group_key for record in ledger] == ["P1"]  # closed by the skipped input
    assert run.processor.counters.covered == 1
