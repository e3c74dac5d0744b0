"""Replay reproduces the processor (issue 16), hypothesis on virtual time only.

For any generated instances log -- instances and ``clock.tick`` records on several
partitions, log times non-decreasing per partition, any ``received_at``, instances
without a group key -- a production run is simulated the way the runtime works
(docs/processing.md "Why every job is written exactly once"): a processor reads from the
committed offsets, its decisions go to the ledger at once, commits stop at the oldest
input it holds, and at random points the process crashes (nothing committed since the
last commit) or the partitions are rebalanced (revoked, safe offsets committed, a new
owner); each new owner skips the inputs the ledger covers. Replaying the whole log with
the production settings must give exactly the ledger's groups (equal ``group.closed``
records: members, times, deterministic job ids and names) and the same groups still
open at the end. With ``lateArrivals: amend`` (versions are kept in memory, see
docs/processing.md) the run has commits but no crash or rebalance.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.contracts import ProcessorContext
from processors.exactly_once import CoveredInputs
from processors.reclaim import removal_request
from processors.replay import CollectingSink, replay_records
from processors.runtime.router import InstanceRouter
from streams.events import ClockTick, GroupClosed, InputOffset, envelope
from streams.kafka import Record
from tests.helpers.instances import make_instance

AE = "AET1"
T0 = 1_732_800_000_000
STORAGE = Path("/nonexistent-replay-storage")


@dataclass(frozen=True)
class Log:
    settings: dict[str, Any]
    records: list[Record]  # in the order they were appended (per partition: offsets)
    cuts: list[tuple[int, str]]  # (records processed before it, "crash" | "rebalance" | "commit")


@st.composite
def logs(draw: st.DrawFn) -> Log:
    timeout = draw(st.sampled_from([5, 7, 10]))
    raw: dict[str, Any] = {"timeout": timeout, "pipeline-a": "PA"}
    if draw(st.booleans()):
        raw["pipeline-b"] = "PB"
    if draw(st.booleans()):
        raw["maxAge"] = draw(st.sampled_from([8, 15, 30]))
    raw["groupBy"] = draw(st.sampled_from(["Study", "Series", "Patient"]))
    amend = draw(st.booleans())
    if amend:  # versions live in memory: equal to a run without crash or rebalance
        raw.update(lateArrivals="amend", lateWindow=draw(st.sampled_from([5, 20])))
    partitions = draw(st.integers(min_value=1, max_value=3))
    now = T0
    offsets = dict.fromkeys(range(partitions), 0)
    ticked = dict.fromkeys(range(partitions), T0 - 1)
    records: list[Record] = []
    for _ in range(draw(st.integers(min_value=0, max_value=70))):
        now += draw(st.sampled_from([0, 200, 1000, 3000, 4999, 5000, 5001, 9000, 16000]))
        p = draw(st.integers(min_value=0, max_value=partitions - 1))
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            watermark = now - draw(st.sampled_from([0, 500, 2000]))
            if watermark <= ticked[p]:
                continue
            ticked[p] = watermark
            env = envelope(
                ClockTick(watermark, "proc"),
                source="proc",
                time_ms=now,
                event_id=f"t{len(records)}",
            )
        else:
            study = draw(st.sampled_from(["S1", "S2", "S3", ""]))
            item = make_instance(
                received_at=now + draw(st.sampled_from([0, -30_000, 40_000])),
                ae=AE,
                patient=draw(st.sampled_from(["P1", "P2"])),
                study=study,
                series=f"{study}.{draw(st.integers(min_value=1, max_value=2))}",
                sop=draw(st.sampled_from([f"1.2.3.{len(records)}"] * 3 + ["1.2.3.dup"])),
            )
            env = envelope(item, source="scp", time_ms=now, event_id=f"e{len(records)}")
        records.append(Record("dicom.instances", p, offsets[p], "k", now, env))
        offsets[p] += 1
    cuts = sorted(
        draw(
            st.lists(
                st.tuples(
                    st.integers(min_value=0, max_value=max(len(records), 1)),
                    st.sampled_from(["crash", "rebalance", "commit", "commit"]),
                ),
                max_size=8,
            )
        )
    )
    if amend:
        cuts = [cut for cut in cuts if cut[1] == "commit"]
    return Log(raw, records, cuts)


def new_processor(raw: dict[str, Any], sink: Any) -> AeTitleJobProcessor:
    proc = AeTitleJobProcessor(AE, raw, sink, TestScheduler())
    asyncio.run(proc.start(ProcessorContext(storage=STORAGE, grace_ms=0, log_clock=True)))
    return proc


class Production:
    """The runtime's exactly-once rules, without Kafka: a ledger appended at once (acks),
    committed offsets bounded by held inputs, owners that come and go."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.ledger: list[GroupClosed] = []
        self.committed: dict[int, int] = {}
        self.position: dict[int, int] = {}
        self.sink = CollectingSink()
        self.proc = self._owner()

    def _owner(self) -> AeTitleJobProcessor:
        self._flush()
        self.sink = CollectingSink()
        proc = new_processor(self.log.settings, self.sink)
        proc.set_covered(CoveredInputs.from_records(self.ledger))
        self.router = InstanceRouter(
            {AE: proc}, self.sink, ready=set(range(3)), covered=lambda: None, fail=_raise
        )
        self.position = dict(self.committed)
        return proc

    def _flush(self) -> None:
        # The sink "writes" each decision at once: the ledger is acknowledged.
        for group in self.sink.groups:
            self.ledger.append(group.record)
        for removal in self.sink.removals:
            self.ledger.append(
                removal_request(
                    processor="p",
                    ae_title=AE,
                    instances=removal.instances,  # type: ignore[arg-type]
                    inputs=removal.inputs,
                    reason=removal.reason,
                )
            )
        self.sink.groups.clear()
        self.sink.removals.clear()

    def _commit(self) -> None:
        self._flush()
        held = self.proc.held_offsets()
        for p, pos in self.position.items():
            self.committed[p] = min(pos, held.get(p, pos))

    def run(self) -> None:
        done = 0
        for at, kind in self.log.cuts:
            done = self._until(at, done)
            if kind == "commit":
                self._commit()
            elif kind == "rebalance":
                held = self.proc.held_offsets()
                self.proc.partitions_revoked(range(3))  # open groups dropped, not written
                self._flush()
                for p, pos in self.position.items():
                    self.committed[p] = min(pos, held.get(p, pos))
                self.proc = self._owner()
                done = 0
            else:  # crash: whatever was decided was written (acks), nothing committed
                self.proc = self._owner()
                done = 0
        self._until(len(self.log.records), done)
        self._flush()

    def _until(self, count: int, done: int) -> int:
        """Process records (skipping those below this owner's start) until ``count`` of
        the log's records have been looked at; returns how many were looked at."""
        for record in self.log.records[done:count]:
            if record.offset < self.position.get(record.partition, 0):
                continue
            self.router.on_next(record)
            self.position[record.partition] = record.offset + 1
        return max(done, count)


def _raise(error: BaseException) -> None:
    raise error


def by_first_input(records: list[GroupClosed]) -> list[GroupClosed]:
    return sorted(records, key=lambda r: (r.inputs[0].partition, r.inputs[0].offset))


def open_members(proc: AeTitleJobProcessor) -> list[tuple[int, int, int]]:
    return sorted((g.partition, g.first_offset, g.instances) for _, g in proc.groups(range(3)))


@settings(max_examples=150, deadline=None)
@given(logs())
def test_replay_with_production_settings_gives_the_ledgers_groups(log: Log) -> None:
    production = Production(log)
    production.run()
    sink, scheduler = CollectingSink(), TestScheduler()
    result = replay_records(
        {AE: new_processor(log.settings, sink)}, sink, scheduler, iter(log.records)
    )
    ledger_groups = [r for r in production.ledger if r.jobs]
    closed = [g.record for g in result.groups if not g.open]
    assert by_first_input(closed) == by_first_input(ledger_groups)
    still_open = sorted(
        (g.record.inputs[0].partition, g.record.inputs[0].offset, len(g.record.inputs))
        for g in result.groups
        if g.open
    )
    assert still_open == open_members(production.proc)
    # Every input is in exactly one place: a group or an ignored instance.
    placed = [i for g in result.groups for i in g.record.inputs]
    placed += [i for r in result.removals for i in r.inputs]
    instances = [
        InputOffset(r.partition, r.offset)
        for r in log.records
        if r.envelope.type == "instance.received"
    ]
    assert sorted(placed, key=_pos) == sorted(instances, key=_pos)


def _pos(item: InputOffset) -> tuple[int, int]:
    return item.partition, item.offset
