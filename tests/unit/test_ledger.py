"""Pure exactly-once logic: covered inputs, safe commits, ledger resume positions.

The property tests play a processor that "crashes" at random instants: each run marks
records done in a real ``CommitTracker`` (as the Kafka bridge does) and bounds commits by
the processor's held offsets (as the runtime does), writes ``group.closed`` records to an
in-memory ledger (acknowledged synchronously), commits the tracker's safe offsets at
random moments with the ledger position the runtime's :class:`LedgerIndex` gives, and
loses all memory at the crash. The next run starts from the commits, rebuilds the
covered inputs from the ledger with the index (as the runtime does on assignment) and
replays. Every keyed instance must end in exactly one group, no job id twice; with
event-time closing only, the records equal one uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Sequence

from helpers.instances import ae_title_processor, make_instance
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleSettings
from processors.aetitle.settings import PATIENT_ID
from processors.contracts import Removal
from processors.exactly_once import CoveredInputs
from processors.runtime import LedgerIndex
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
    everything = CoveredInputs.from_records(records)
    assert [everything.offsets(p) for p in (0, 1, 2)] == [{1, 3}, {7}, {0}]
    covered = CoveredInputs.from_records(records, partitions=[0, 1])
    assert covered.covers(0, 3) and covered.covers(1, 7)
    assert not covered.covers(0, 2) and not covered.covers(2, 0)
    covered.prune(0, below=2)
    assert covered.offsets(0) == {3} and len(covered) == 2
    covered.drop([1])
    assert not covered.covers(1, 7) and len(covered) == 1


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

    def __init__(
        self,
        ledger: list[GroupClosed],
        covered: CoveredInputs | None,
        index: LedgerIndex | None = None,
    ) -> None:
        self.sched = TestScheduler()
        self.ledger = ledger
        self.index = index
        self.tracker: CommitTracker[int] = CommitTracker()
        self.processor = ae_title_processor(self, self.sched, CFG, caught_up=False)
        self.processor.set_covered(covered)

    def consume(self, item: Item) -> None:
        """What the Kafka bridge does per record: on_next, then mark it done."""
        self.processor.on_next(item)
        self.tracker.mark_done(item[0], item[1])

    # JobSink: the ledger write is acknowledged synchronously here (nothing in flight).
    def group_closed(self, record: GroupClosed, superseded: Sequence[object] = ()) -> None:
        self.ledger.append(record)
        if self.index is not None:
            self.index.acked(0, len(self.ledger) - 1, record)

    def remove(self, removal: Removal) -> None:
        return None

    def bound(self, partition: int) -> int | None:
        """The runtime's commit bound: the oldest first input of an open group."""
        return self.processor.held_offsets().get(partition)

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
    """Commit the tracker's safe offsets with the ledger position to resume at (what the
    runtime stores in the commit metadata)."""
    assert run.index is not None
    for p, offset in run.tracker.committable(run.bound).items():
        state.commits[p] = max(state.commits.get(p, 0), offset)
        state.metadata[p] = run.index.positions(p, state.commits[p]).get(0, len(ledger))


class Progress:
    """What survives a crash: committed offsets and their metadata (ledger position)."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.commits: dict[int, int] = {}
        self.metadata: dict[int, int] = {}

    def restart(self, ledger: list[GroupClosed]) -> Run:
        """A new owner of every partition: read the ledger from the stored positions (a
        partition never committed reads it all) and build the covered inputs."""
        index = LedgerIndex(max(self.partitions) + 1, 1)
        stored = {p: {0: self.metadata[p]} if p in self.metadata else None for p in self.partitions}
        start = index.starts(stored)[0] or 0
        read = [(0, position, ledger[position]) for position in range(start, len(ledger))]
        covered = index.load(self.partitions, self.commits, read, {0: len(ledger)})
        return Run(ledger, covered, index)

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
