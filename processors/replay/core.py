"""Replay the instances log through job processors, submitting nothing (issue 16).

The groups are formed by the processors themselves -- the same
:class:`~processors.aetitle.AeTitleJobProcessor` and session window the ``process`` role
runs, fed through the runtime's own :class:`~processors.runtime.router.InstanceRouter`
(so duplicate events, ``clock.tick`` records and close requests are handled as in
production). Time is the bus clock written in the log (docs/processing.md, "Time"):
each record carries its ``LogAppendTime``, groups close only by the ticks, and the
processors' scheduler is a :class:`~reactivex.testing.TestScheduler` moved to each
record's log time -- nothing here reads the wall clock, so one log gives one answer.

Decisions go to a :class:`CollectingSink` instead of the ledger. At the end of the log
the groups no tick closed yet are taken out of the window as they stand (marked
``open``): what the processor would still be waiting on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.contracts import InstanceRef, ProcessorContext, Removal
from processors.jobnames import group_id
from processors.runtime import build_processors, processor_classes
from processors.runtime.router import InstanceRouter
from streams.config import AdapterConfig
from streams.errors import ConfigError
from streams.events import GroupClosed, GroupCloseRequested, InputOffset, InstanceReceived
from streams.kafka import Record

log = logging.getLogger(__name__)

REPLAY_SOURCE = "dicom-adapter replay"


@dataclass(frozen=True, slots=True)
class ReplayedGroup:
    """A group the replay formed: its ``group.closed`` record (with the jobs it would
    get) and whether it was still ``open`` at the end of the log (no tick passed its
    due time yet; its ``reason`` is then meaningless)."""

    record: GroupClosed
    open: bool = False

    @property
    def group_id(self) -> str:
        """The group's id: uuid5 of its AE title and first input (``jobnames.group_id``)."""
        first = self.record.inputs[0]
        return group_id(self.record.ae_title, first.partition, first.offset)


@dataclass(slots=True)
class CollectingSink:
    """A :class:`~processors.contracts.JobSink` that keeps decisions instead of writing."""

    groups: list[ReplayedGroup] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    marking_open: bool = False

    def group_closed(self, record: GroupClosed, superseded: Sequence[InstanceRef] = ()) -> None:
        """Keep the group (``superseded`` copies would only be reclaimed: not a group)."""
        self.groups.append(ReplayedGroup(record, open=self.marking_open))

    def remove(self, removal: Removal) -> None:
        """Keep the removal (an instance the processor ignored)."""
        self.removals.append(removal)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay formed, and the SOP Instance UID read at each input position."""

    groups: tuple[ReplayedGroup, ...]
    removals: tuple[Removal, ...]
    sop_at: Mapping[InputOffset, str]
    records: int


class Replay:
    """Feed :meth:`feed` the instances log (partition order kept), then :meth:`finish`.

    ``processors`` by AE title, writing to ``sink``, timed by ``scheduler`` (built by
    :func:`replay_processors`, or by a test). Raises the first processor error (a
    replay that lost a record would not answer the question).
    """

    def __init__(
        self,
        processors: Mapping[str, AeTitleJobProcessor],
        sink: CollectingSink,
        scheduler: TestScheduler,
    ) -> None:
        self.processors = dict(processors)
        self.sink = sink
        self.scheduler = scheduler
        self._ready: set[int] = set()
        self._errors: list[BaseException] = []
        self._sop_at: dict[InputOffset, str] = {}
        self._records = 0
        self.router = InstanceRouter(
            self.processors,
            sink,
            ready=self._ready,
            covered=lambda: None,
            fail=self._errors.append,
        )

    def feed(self, record: Record) -> None:
        """One record of the instances topic, at its log time."""
        self._records += 1
        self._ready.add(record.partition)
        data = record.envelope.data
        if isinstance(data, InstanceReceived) and data.called_ae in self.processors:
            self._sop_at[InputOffset(record.partition, record.offset)] = data.sop_instance_uid
        at = record.timestamp / 1000
        if at > self.scheduler.clock:
            self.scheduler.advance_to(at)
        self.router.on_next(record)
        if self._errors:
            raise self._errors[0]

    def feed_all(self, records: Iterable[Record]) -> None:
        """:meth:`feed` every record."""
        for record in records:
            self.feed(record)

    def finish(self) -> ReplayResult:
        """Take the groups still open out of the windows (marked open) and return all."""
        self.sink.marking_open = True
        for ae_title, processor in self.processors.items():
            for gid, view in processor.groups(sorted(self._ready)):
                request = GroupCloseRequested(gid, ae_title, requested_by=REPLAY_SOURCE)
                processor.close_requested(view.partition, request)
        self.sink.marking_open = False
        return ReplayResult(
            tuple(self.sink.groups), tuple(self.sink.removals), dict(self._sop_at), self._records
        )


async def replay_processors(
    config: AdapterConfig, sink: CollectingSink, scheduler: TestScheduler, *, storage: Path
) -> dict[str, AeTitleJobProcessor]:
    """The AE Title Job Processors of ``config`` on the bus clock, writing to ``sink``.

    Raises :class:`ConfigError` for an AE title whose processor is not the AE Title Job
    Processor (a custom processor may keep state outside the log: replaying it could
    touch that state) or whose groups span patients (they are formed on a rekeyed
    topic, not on the instances log).
    """
    classes = processor_classes(config)
    problems: list[str] = []
    for index, ae in enumerate(config.scp.ae_titles):
        cls = classes[ae.ae_title]
        where = f"scp.ae_titles[{index}] ({ae.ae_title})"
        if not issubclass(cls, AeTitleJobProcessor):
            problems.append(
                f"{where}: processor {ae.processor!r} is not the AE Title Job Processor; "
                "replay only runs that one (pick the others out with --ae)"
            )
            continue
        settings, _ = cls.parse_settings(ae.ae_title, ae.processor_settings, where=where)
        if cls.repartition_key(settings) is not None:
            problems.append(
                f"{where}: processorSettings.groupBy {settings.group_by_keyword or 'tag'} "
                "spans patients, so its groups are formed on a rekeyed topic; replay "
                "regroups Patient, Study or Series only (pick the others out with --ae)"
            )
    if problems:
        raise ConfigError(problems)
    built = build_processors(config, sink, scheduler)
    context = ProcessorContext(storage=storage, grace_ms=0, log_clock=True)
    out: dict[str, AeTitleJobProcessor] = {}
    for ae_title, processor in built.items():
        assert isinstance(processor, AeTitleJobProcessor)  # checked above
        await processor.start(context)
        out[ae_title] = processor
    return out


def replay_records(
    processors: Mapping[str, AeTitleJobProcessor],
    sink: CollectingSink,
    scheduler: TestScheduler,
    records: Iterable[Record],
) -> ReplayResult:
    """Replay ``records`` through ``processors`` and return what they formed."""
    replay = Replay(processors, sink, scheduler)
    replay.feed_all(records)
    return replay.finish()


def replay_config(
    config: AdapterConfig, records: Iterable[Record], *, storage: Path | None = None
) -> ReplayResult:
    """Replay ``records`` with the AE titles of ``config`` (a fresh sink and scheduler)."""
    sink, scheduler = CollectingSink(), TestScheduler()
    processors = asyncio.run(
        replay_processors(config, sink, scheduler, storage=storage or Path(config.storage))
    )
    return replay_records(processors, sink, scheduler, records)
