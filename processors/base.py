"""``JobProcessor``: the base of every job processor (the seed's ``JobProcessorBase``).

A processor is an Rx observer of ``instance.received`` records, given as
``(partition, offset, InstanceReceived)`` items (the input position is what makes jobs
exactly-once). One processor serves one AE title. Subclasses implement
:meth:`JobProcessor.handle_instance` and call :meth:`JobProcessor.submit_pipeline_job`
(or :meth:`JobProcessor.close_group`) and :meth:`JobProcessor.remove_instances`, which
delegate to an injected :class:`~processors.contracts.JobSink` -- the runtime implements
it by writing ledger events (``group.closed``) and handing files to the reclaimer.

The runtime knows a processor only through this class's public hooks: the quiet timeout
(:attr:`JobProcessor.quiet_timeout_ms`), the open-group count
(:attr:`JobProcessor.open_groups`), the key its groups need to stay in one partition
(:meth:`JobProcessor.repartition_key`) and the input offsets it still needs
(:meth:`JobProcessor.held_offsets`).

Instances for another AE title are **filtered** (ignored and counted), not raised as
Clara's ``InstanceNotSupportedException``: in Rx an observer that raises from
``on_next`` is detached from its source (``AutoDetachObserver``), so one misrouted
record would silently stop the processor. The router that feeds processors reclaims
instances no processor accepts (:meth:`JobProcessor.accepts` tells which). Errors raised
by ``handle_instance`` itself propagate to the caller on purpose: the runtime stops and
the log is replayed after restart rather than an instance being dropped silently.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Unpack

from reactivex import abc

from processors.contracts import (
    REASON_DUPLICATE,
    InstanceRef,
    JobSink,
    ProcessorContext,
    ProcessorCounters,
    Removal,
)
from processors.exactly_once import CoveredInputs
from processors.jobrecords import JobDetails, pipeline_job
from streams import metrics
from streams.errors import AdapterError
from streams.events import (
    GroupClosed,
    GroupCloseRequested,
    InputOffset,
    InstanceReceived,
    OpenGroupInfo,
    Priority,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)

InstanceItem = tuple[int, int, InstanceReceived] | tuple[int, int, InstanceReceived, int]
"""``(partition, offset, instance)`` or ``(partition, offset, instance, log time)``: the
runtime gives the record's log time (the broker's ``LogAppendTime``, epoch ms)."""

#: What :meth:`JobProcessor.triage` makes of an item: for another AE title (ignored),
#: already held by a closed group (replayed after a restart), or new input.
OTHER_AE, COVERED, NEW = 0, 1, 2


def item_time(item: InstanceItem) -> int:
    """The item's log time, or its instance's ``received_at`` when the item has none."""
    return item[3] if len(item) > 3 else item[2].received_at


class ProcessorFailedError(AdapterError):
    """A processor's pipeline failed earlier; it takes no more input (restart replays)."""

    retriable = True


class JobProcessor(abc.ObserverBase[InstanceItem], ABC):
    """Base of job processors: an observer of one AE title's instances.

    The constructor gets the AE title, its raw ``processorSettings``, the sink and the
    scheduler every timer must use (never a default scheduler), parses the settings with
    :meth:`parse_settings` into :attr:`settings` (unless parsed ``settings`` are given),
    then calls :meth:`setup`: subclasses build their state there and keep the
    constructor's signature. ``name`` is abstract; ``ae_title`` comes from the
    configuration (Clara made it abstract because its base class never saw it).
    """

    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        ae_title: str,
        processor_settings: Mapping[str, Any],
        sink: JobSink,
        scheduler: abc.SchedulerBase,
        *,
        settings: Any = None,
    ) -> None:
        if not ae_title or not ae_title.strip():
            raise ValueError("a job processor needs a non-blank AE title")
        self._ae_title = ae_title
        self.processor_settings = dict(processor_settings)
        self.sink = sink
        self.scheduler = scheduler
        self.counters = ProcessorCounters()
        self._covered: CoveredInputs | None = None
        self._stopped = False
        self.failure: Exception | None = None
        if settings is None:
            settings, warnings = self.parse_settings(ae_title, self.processor_settings)
            for warning in warnings:
                log.warning("%s", warning)
        self.settings: Any = settings
        self.setup()

    def setup(self) -> None:
        """Build the processor's state once :attr:`settings` is parsed (windows,
        subscriptions). The default builds nothing."""

    # -- identity --------------------------------------------------------------------

    @property
    @abstractmethod
    def name(self) -> str:
        """The processor's name, e.g. ``"AE Title Job Processor"``."""

    @property
    def ae_title(self) -> str:
        """The AE title this processor serves (case-sensitive, as Clara)."""
        return self._ae_title

    @classmethod
    def required_tags(cls, ae_title: str, processor_settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Extra DICOM tags (8 upper-case hex digits) the SCP must put in ``tags``.

        Defaults to :attr:`REQUIRED_TAGS`; override when the tags depend on settings.
        """
        return cls.REQUIRED_TAGS

    @classmethod
    def parse_settings(
        cls, ae_title: str, processor_settings: Mapping[str, Any], *, where: str | None = None
    ) -> tuple[Any, list[str]]:
        """``(settings, warnings)`` of the raw ``processorSettings``; raises ``ConfigError``
        listing every problem, one line each. ``where`` is the key path of the AE title
        entry (``scp.ae_titles[0]``). The default accepts anything: the raw mapping."""
        return dict(processor_settings), []

    @classmethod
    def validate_settings(
        cls, ae_title: str, processor_settings: Mapping[str, Any], *, where: str | None = None
    ) -> list[str]:
        """Check ``processorSettings`` for ``config check`` and the roles: the warnings of
        :meth:`parse_settings` (which raises ``ConfigError`` listing every problem)."""
        return cls.parse_settings(ae_title, processor_settings, where=where)[1]

    @classmethod
    def repartition_key(cls, settings: Any) -> Callable[[InstanceReceived], str] | None:
        """The key that keeps each group (of parsed ``settings``) in one partition, when
        the instances topic's key -- the called AE title and the patient -- does not;
        ``None`` (the default) when it does.

        With a key, the process copies this AE title's instances into
        ``<prefix>.rekeyed.<AE title>`` keyed by it and feeds the processor from there
        (:mod:`processors.roles.repartition`, docs/processing.md "Repartitioning").
        """
        return None

    @classmethod
    def api_router(cls, processors: Mapping[str, JobProcessor]) -> APIRouter | None:
        """A FastAPI router the runtime mounts on the process's HTTP app, or ``None``.

        Called once per processor class with that class's processors by AE title (a live
        mapping: the runtime may replace entries). The default serves nothing.
        """
        return None

    def __str__(self) -> str:
        return self.name

    # -- the observer ----------------------------------------------------------------

    def accepts(self, instance: InstanceReceived) -> bool:
        """Whether ``instance`` is for this processor's AE title (ordinal comparison)."""
        return instance.called_ae == self._ae_title

    def on_batch(self, items: Sequence[InstanceItem]) -> None:
        """Several items of one partition, in log order (the runtime hands over each
        read's instances in one call). The default is :meth:`on_next` for each; override
        it to work per batch, with the same result as item by item."""
        for item in items:
            self.on_next(item)

    def check_running(self) -> None:
        """Raise :class:`ProcessorFailedError` if the processor failed earlier."""
        if self.failure is not None:
            raise ProcessorFailedError(
                f"{self.name} {self._ae_title} failed earlier and takes no more input: "
                f"{self.failure}; restart it (the log is replayed)"
            ) from self.failure

    def on_next(self, value: InstanceItem) -> None:
        """Dispatch one item (:data:`InstanceItem`) to :meth:`handle_record`."""
        self.check_running()
        self.dispatch(value, self.triage(value[0], value[1], value[2]))

    def triage(self, partition: int, offset: int, instance: InstanceReceived) -> int:
        """Count an input and say what it is: :data:`OTHER_AE`, :data:`COVERED` or
        :data:`NEW` (the one place that decides, for item and batch paths alike)."""
        if instance.called_ae != self._ae_title:
            self.counters.not_supported += 1
            log.debug("%s %s: ignoring an instance for another AE title", self.name, self._ae_title)
            return OTHER_AE
        covered = self._covered
        if covered is not None and covered.covers(partition, offset):
            self.counters.covered += 1
            return COVERED
        self.counters.instances += 1
        return NEW

    def dispatch(self, item: InstanceItem, verdict: int) -> None:
        """:meth:`on_covered` or :meth:`handle_record`, as :meth:`triage` decided."""
        if verdict == OTHER_AE:
            return
        instance, position = item[2], InputOffset(item[0], item[1])
        if verdict == COVERED:
            self.on_covered(instance, position)
        else:
            self.handle_record(instance, position, item_time(item))

    def on_error(self, error: Exception) -> None:
        """The source failed: log (Clara: "Error occurred while processing instance.")."""
        log.error("%s %s: instance stream failed: %s", self.name, self._ae_title, error)
        self.fail(error)

    def fail(self, error: Exception) -> None:
        """Record a failure: later input raises :class:`ProcessorFailedError`."""
        if self.failure is None:
            self.failure = error
        self._stop()

    def on_completed(self) -> None:
        """The source ended (graceful shutdown): stop without emitting partial groups."""
        self._stop()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.stopped()

    @property
    def is_stopped(self) -> bool:
        """Whether the source completed or failed."""
        return self._stopped

    # -- what subclasses implement ---------------------------------------------------

    @abstractmethod
    def handle_instance(self, instance: InstanceReceived, position: InputOffset) -> None:
        """Handle one instance of this AE title read at ``position`` of the log."""

    def handle_record(self, instance: InstanceReceived, position: InputOffset, time: int) -> None:
        """:meth:`handle_instance` with the record's log time (epoch ms, the bus clock);
        override it instead when time matters to you."""
        self.handle_instance(instance, position)

    def on_watermark(self, partition: int, watermark: int) -> None:
        """The bus clock of ``partition`` reached ``watermark`` (a ``clock.tick``): no
        live source can still append a record received earlier. Close what is due."""

    def next_due(self, partition: int) -> int | None:
        """The bus time at which something of ``partition`` is due to close (``None``:
        nothing): the runtime writes a ``clock.tick`` once the bus passes it."""
        return None

    def close_requested(self, partition: int, request: GroupCloseRequested) -> str:
        """An operator asked to close ``request.group_id`` now; say what happened in a
        word (``closed``, or ``unknown`` when this processor has no such open group)."""
        return "unknown"

    def open_groups_on(self, partition: int) -> tuple[OpenGroupInfo, ...]:
        """The open groups of ``partition``, oldest first, as operators see them
        (``groups list``, ``/ui``; the runtime says them on ``<prefix>.groups``). The
        default shows none."""
        return ()

    def open_groups_head(self, partition: int, limit: int) -> tuple[tuple[OpenGroupInfo, ...], int]:
        """The first ``limit`` of :meth:`open_groups_on` and how many there are in all
        (what the runtime says on ``<prefix>.groups``); override it when listing every
        open group is costly."""
        groups = self.open_groups_on(partition)
        return groups[:limit], len(groups)

    def open_groups_version(self, partition: int) -> int | None:
        """A value that changes whenever :meth:`open_groups_on` of ``partition`` would
        change, so the runtime can skip asking; ``None`` (the default): always ask."""
        return None

    def on_covered(self, instance: InstanceReceived, position: InputOffset) -> None:
        """An input already consumed by a ``group.closed`` was skipped (replay).

        Processors with event-time state override this to advance their clocks.
        """

    def stopped(self) -> None:
        """Called once when the source completes or fails; release timers here."""

    # -- hooks the runtime calls (exactly-once, rebalances) ---------------------------

    async def start(self, context: ProcessorContext) -> None:
        """Called once by the runtime after construction and before the first input:
        open files, recover state (the default does nothing)."""

    def set_covered(self, covered: CoveredInputs | None) -> None:
        """Inputs to skip while replaying (built from the ledger on assignment)."""
        self._covered = covered

    def partition_caught_up(self, partition: int, caught_up: bool = True) -> None:
        """The consumer reached (or fell behind) the end of an instances partition."""

    def partitions_revoked(self, partitions: Iterable[int]) -> None:
        """Partitions were taken away: drop their state without emitting anything."""

    def held_offsets(self) -> dict[int, int]:
        """``{partition: oldest input offset still needed}``: the runtime never commits
        past it. A processor that keeps instances in memory past ``handle_instance``
        must report the first input of each; one that stores them durably first (the
        cache processor) needs nothing."""
        return {}

    @property
    def quiet_timeout_ms(self) -> int | None:
        """The quiet period after which a group closes (``None``: no such timeout);
        the runtime measures close lag against it."""
        return None

    @property
    def open_groups(self) -> int:
        """Groups open right now (a metric)."""
        return 0

    # -- provided helpers (Clara's SubmitPipelineJob / RemoveInstances) ---------------

    def close_group(self, record: GroupClosed, *, superseded: Sequence[InstanceRef] = ()) -> None:
        """Hand a closed group and its jobs to the sink (the ledger write), with the
        earlier copies of its instances whose files no job needs (``superseded``)."""
        self.counters.groups += 1
        self.counters.jobs += len(record.jobs)
        if superseded:
            self.counters.removed += len(superseded)
            metrics.instances_ignored(self._ae_title, REASON_DUPLICATE, len(superseded))
        self.sink.group_closed(record, superseded)

    def submit_pipeline_job(
        self,
        name: str,
        pipeline_id: str,
        priority: Priority,
        instances: Sequence[InstanceReceived],
        **details: Unpack[JobDetails],
    ) -> GroupClosed:
        """Submit one pipeline job with ``instances`` (Clara's ``SubmitPipelineJob``).

        Recorded as a ``group.closed`` with one job, so custom processors get the same
        ledger, submitter and exactly-once treatment. ``name`` is fixed as Clara's
        ``FixJobName``; pass ``inputs`` (the positions the instances came from) so a
        replay skips them. The job id is uuid5 of processor, AE, pipeline, group key
        (default: the name) and first input (or first SOP Instance UID). ``details``:
        ``inputs``, ``pipeline_name``, ``group_key``. A processor that writes the record
        itself (e.g. awaiting a durable sink) builds it with
        :func:`processors.jobrecords.pipeline_job`.
        """
        record = pipeline_job(
            name, pipeline_id, priority, instances, processor=self.name, ae_title=self._ae_title,
            **details,
        )  # fmt: skip
        self.close_group(record)
        return record

    def remove_instances(
        self,
        instances: Sequence[InstanceRef],
        reason: str = "removed",
        *,
        inputs: Sequence[InputOffset] = (),
    ) -> None:
        """Hand instance files to the reclaimer (Clara's ``RemoveInstances``).

        Pass ``inputs`` (the positions the instances were read at) when the removal is
        what consumes them, e.g. an instance ignored in ``handle_instance``: a replay
        then skips them.
        """
        if instances:
            self.counters.removed += len(instances)
            metrics.instances_ignored(self._ae_title, reason, len(instances))
            self.sink.remove(Removal(self._ae_title, instances, reason, inputs))
