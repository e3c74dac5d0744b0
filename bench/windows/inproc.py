"""In-process measurements of our window: no Kafka, virtual time, event-time closing.

* throughput of the session window operator alone, of the AE Title Job Processor
  (``on_next`` -> window -> ``group.closed`` record) and of the processor with the codec
  around it (decode ``instance.received`` bytes, encode the ``group.closed`` envelope) --
  the CPU floor of the Kafka runtime per event;
* memory per open instance and per open group (``tracemalloc``): open 100k instances
  in 10k groups (and 10k single-instance groups) from decoded bytes, as the runtime
  holds them, and measure what stays allocated.

The processors run on a ``TestScheduler`` that is never advanced, with partitions not
caught up (as while replaying a backlog): groups close only by event time, when a later
record (the next round, then the sentinel) moves the partition clock past the deadline.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from aiokafka.partitioner import murmur2
from reactivex.subject import Subject
from reactivex.testing import TestScheduler

from bench.windows.data import AE_TITLE, Dataset, Event, generate
from processors.aetitle import AeTitleJobProcessor, AeTitleSettings
from processors.aetitle.settings import PATIENT_ID
from processors.contracts import InstanceRef, Removal
from processors.windows import session_window
from streams.events import (
    GroupClosed,
    GroupInstance,
    InstanceReceived,
    decode,
    encode,
    envelope,
)

PIPELINE_ID = "8abf244aff7647989d4f6b3987a85759"
SETTINGS = AeTitleSettings(
    group_by=PATIENT_ID,
    priority="normal",
    timeout_s=5,
    pipelines=(("bench", PIPELINE_ID),),
    group_by_keyword="PatientID",
)


class CountingSink:
    """A ``JobSink`` that counts groups (optionally encoding each as the runtime would)."""

    def __init__(self, encode_records: bool = False) -> None:
        self.groups = 0
        self.members = 0
        self.bytes = 0
        self._encode = encode_records

    def group_closed(self, record: GroupClosed, superseded: Sequence[InstanceRef] = ()) -> None:
        self.groups += 1
        self.members += len(record.inputs)
        if self._encode:
            self.bytes += len(encode(envelope(record, source="bench", time_ms=0)))

    def remove(self, removal: Removal) -> None:
        raise AssertionError(f"unexpected reclaim of {len(removal.instances)} ({removal.reason})")


@dataclass(frozen=True, slots=True)
class Rate:
    """One throughput measurement."""

    name: str
    events: int
    groups: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as the producer placed it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def positioned(dataset: Dataset, partitions: int) -> list[tuple[int, int, Event]]:
    """``(partition, offset, event)`` of the log incl. sentinels, in log order."""
    next_offset = [0] * partitions
    out: list[tuple[int, int, Event]] = []
    for ev in (*dataset.events, *dataset.sentinels(partitions)):
        p = ev.partition if ev.partition is not None else partition_of(ev.key, partitions)
        out.append((p, next_offset[p], ev))
        next_offset[p] += 1
    return out


def new_processor(sink: CountingSink) -> AeTitleJobProcessor:
    """The AE Title Job Processor as the runtime builds it, replaying (not caught up)."""
    processor = AeTitleJobProcessor(AE_TITLE, {}, sink, TestScheduler(), settings=SETTINGS)
    processor.window.state.caught_up_default = False
    return processor


def _timed(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(dataset: Dataset, partitions: int = 1) -> list[Rate]:
    """Events/s of the operator, the processor, and processor + codec."""
    log = positioned(dataset, partitions)
    raws = [(p, o, ev.value) for p, o, ev in log]
    items: list[tuple[int, int, InstanceReceived]] = [(p, o, _instance(raw)) for p, o, raw in raws]
    counted = dataset.counted_events
    rates: list[Rate] = []

    # 1. the window operator alone (key precomputed, GroupInstance members)
    window = session_window(
        attrgetter("patient_id"),
        SETTINGS.timeout_s * 1000,
        TestScheduler(),
        caught_up=False,
        element_fn=GroupInstance.of,
    )
    closed: list[Any] = []
    subject: Subject[Any] = Subject()
    subject.pipe(window).subscribe(closed.append)
    keyed = [(p, o, inst, inst.patient_id) for p, o, inst in items]
    on_next = subject.on_next

    def window_run() -> None:
        for x in keyed:
            on_next(x)

    seconds = _timed(window_run)
    rates.append(Rate("window operator (SessionWindow)", counted, _counted(closed), seconds))

    # 2. the AE Title Job Processor: on_next -> window -> group.closed record
    sink = CountingSink()
    proc = new_processor(sink)

    def processor_run() -> None:
        for x in items:
            proc.on_next(x)

    seconds = _timed(processor_run)
    rates.append(Rate("AeTitleJobProcessor.on_next", counted, sink.groups, seconds))

    # 3. decode bytes + processor + encode group.closed envelopes
    sink = CountingSink(encode_records=True)
    proc = new_processor(sink)

    def codec_run() -> None:
        for p, o, raw in raws:
            proc.on_next((p, o, _instance(raw)))

    seconds = _timed(codec_run)
    rates.append(Rate("decode + processor + encode", counted, sink.groups, seconds))
    for rate in rates:
        if rate.groups != dataset.expected_groups:
            raise AssertionError(
                f"{rate.name}: {rate.groups} groups closed, expected {dataset.expected_groups}"
            )
    return rates


def _instance(raw: bytes) -> InstanceReceived:
    data = decode(raw).data
    assert isinstance(data, InstanceReceived)
    return data


def _counted(closed: list[Any]) -> int:
    return sum(1 for g in closed if "sentinel" not in g.key)


@dataclass(frozen=True, slots=True)
class Memory:
    """Bytes retained by open groups, measured with tracemalloc."""

    groups: int
    instances: int
    bytes: int

    @property
    def per_instance(self) -> float:
        return self.bytes / self.instances

    @property
    def per_group(self) -> float:
        return self.bytes / self.groups


def open_memory(instances: int, groups: int) -> Memory:
    """Retained bytes after opening ``instances`` in ``groups`` (all stay open).

    Events are decoded inside the traced region, as the runtime decodes them, so the
    strings a group keeps (UIDs, paths, the opener record) are counted.
    """
    dataset = generate(instances, groups, rounds=1)
    raws = [ev.value for ev in dataset.events]
    sink = CountingSink()
    proc = new_processor(sink)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for offset, raw in enumerate(raws):
            proc.on_next((0, offset, _instance(raw)))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    if proc.window.open_instances != instances or proc.window.open_groups != groups:
        raise AssertionError("groups closed during the memory measurement")
    return Memory(groups, instances, held)
