"""``JobProcessor``: the base of every job processor (the seed's ``JobProcessorBase``).

A processor is an Rx observer of ``instance.received`` records, given as
``(partition, offset, InstanceReceived)`` items (the input position is what makes jobs
exactly-once). One processor serves one AE title. Subclasses implement
:meth:`JobProcessor.handle_instance` and call :meth:`JobProcessor.submit_pipeline_job`
(or :meth:`JobProcessor.close_group`) and :meth:`JobProcessor.remove_instances`, which
delegate to an injected :class:`JobSink` -- the runtime implements it by writing ledger
events (``group.closed``) and handing files to the reclaimer.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from reactivex import abc

from processors.exactly_once import CoveredInputs
from processors.jobnames import fix_job_name, job_id
from streams.errors import AdapterError
from streams.events import (
    GroupClosed,
    GroupInstance,
    InputOffset,
    InstanceReceived,
    JobSpec,
    Priority,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

log = logging.getLogger(__name__)

InstanceItem = tuple[int, int, InstanceReceived]  # (partition, offset, instance)

REASON_SUBMITTED = "submitted"


class ProcessorFailedError(AdapterError):
    """A processor's pipeline failed earlier; it takes no more input (restart replays)."""

    retriable = True


class InstanceRef(Protocol):
    """Anything naming an instance file (``InstanceReceived``, ``GroupInstance``)."""

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def uri(self) -> str: ...


class JobSink(Protocol):
    """Where a processor's decisions go; the runtime writes them as ledger events."""

    def group_closed(self, record: GroupClosed) -> None:
        """Durably record a closed group and its jobs (``group.closed``, acks=all).

        Once the write is acknowledged, release the offset the processor held for the
        group (``processors.exactly_once.held_input(record)``) so commits may pass it.
        """

    def remove_instances(
        self, ae_title: str, instances: Sequence[InstanceRef], reason: str
    ) -> None:
        """Hand instance files to the reclaimer (``reason`` e.g. ``missing-group-key``)."""


@runtime_checkable
class DurableJobSink(JobSink, Protocol):
    """A sink that can also say when a record is durable (optional for runtimes).

    Processors that answer a request only once its job is on the ledger (the cache
    processor's REST API) await :meth:`write_group_closed`; others use the sync
    :meth:`JobSink.group_closed`.
    """

    async def write_group_closed(self, record: GroupClosed) -> None:
        """Write ``record`` as :meth:`JobSink.group_closed` does and return once the
        broker acknowledged it (acks=all); raise (e.g. ``BrokerError``) if it did not."""


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    """What the runtime knows about the process, for :meth:`JobProcessor.start`.

    ``storage`` is the configured storage root; ``bootstrap_servers`` and the topic
    names are those the runtime consumes (empty when there is no broker, e.g. in unit
    tests).
    """

    storage: Path
    adapter_id: str = ""
    bootstrap_servers: str = ""
    instances_topic: str = ""
    jobs_topic: str = ""


class OffsetHolder(Protocol):
    """Keeps input offsets uncommitted (the consumer's ``CommitTracker``, by partition).

    A processor holds the first offset of every open group *during* ``on_next``; the
    sink releases it once the group's ``group.closed`` is durable.
    """

    def hold(self, partition: int, offset: int) -> None:
        """Keep ``offset`` and everything after it on ``partition`` uncommitted."""

    def release(self, partition: int, offset: int) -> bool:
        """Drop one hold of ``offset``; ``False`` if it was not held."""


@dataclass(slots=True)
class ProcessorCounters:
    """What a processor did, for metrics and logs (no PHI)."""

    instances: int = 0
    not_supported: int = 0
    covered: int = 0
    missing_key: int = 0
    groups: int = 0
    jobs: int = 0
    removed: int = 0


class JobProcessor(abc.ObserverBase[InstanceItem], ABC):
    """Base of job processors: an observer of one AE title's instances.

    The constructor gets the AE title, its raw ``processorSettings``, the sink and the
    scheduler every timer must use (never a default scheduler). ``name`` is abstract;
    ``ae_title`` comes from the configuration (Clara made it abstract because its base
    class never saw the configuration).
    """

    REQUIRED_TAGS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        ae_title: str,
        processor_settings: Mapping[str, Any],
        sink: JobSink,
        scheduler: abc.SchedulerBase,
    ) -> None:
        if not ae_title or not ae_title.strip():
            raise ValueError("a job processor needs a non-blank AE title")
        self._ae_title = ae_title
        self.processor_settings = dict(processor_settings)
        self.sink = sink
        self.scheduler = scheduler
        self.counters = ProcessorCounters()
        self._covered: CoveredInputs | None = None
        self._holder: OffsetHolder | None = None
        self._stopped = False
        self.failure: Exception | None = None

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
    def validate_settings(
        cls, ae_title: str, processor_settings: Mapping[str, Any], *, where: str | None = None
    ) -> list[str]:
        """Check ``processorSettings`` for ``config check`` and the roles; returns warnings
        (one line each) and raises ``ConfigError`` listing every problem.

        ``where`` is the key path of the AE title entry (``scp.ae_titles[0]``). The
        default accepts anything; override it to validate your keys.
        """
        return []

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

    def on_next(self, value: InstanceItem) -> None:
        """Dispatch one ``(partition, offset, instance)`` to :meth:`handle_instance`."""
        if self.failure is not None:
            raise ProcessorFailedError(
                f"{self.name} {self._ae_title} failed earlier and takes no more input: "
                f"{self.failure}; restart it (the log is replayed)"
            ) from self.failure
        partition, offset, instance = value
        if instance.called_ae != self._ae_title:
            self.counters.not_supported += 1
            log.debug("%s %s: ignoring an instance for another AE title", self.name, self._ae_title)
            return
        position = InputOffset(partition, offset)
        covered = self._covered
        if covered is not None and covered.covers(partition, offset):
            self.counters.covered += 1
            self.on_covered(instance, position)
            return
        self.counters.instances += 1
        self.handle_instance(instance, position)

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

    def set_offset_holder(self, holder: OffsetHolder | None) -> None:
        """Where to hold the first offset of each open group (the ``CommitTracker``)."""
        self._holder = holder

    def hold_offset(self, partition: int, offset: int) -> None:
        """Hold an input offset uncommitted (no-op without a holder)."""
        if self._holder is not None:
            self._holder.hold(partition, offset)

    def partition_caught_up(self, partition: int, caught_up: bool = True) -> None:
        """The consumer reached (or fell behind) the end of an instances partition."""

    def partitions_revoked(self, partitions: Iterable[int]) -> None:
        """Partitions were taken away: drop their state without emitting anything."""

    def held_offsets(self) -> dict[int, int]:
        """``{partition: oldest input offset still held}``; commits must stay below."""
        return {}

    # -- provided helpers (Clara's SubmitPipelineJob / RemoveInstances) ---------------

    def close_group(self, record: GroupClosed) -> None:
        """Hand a closed group and its jobs to the sink (the ledger write)."""
        self.counters.groups += 1
        self.counters.jobs += len(record.jobs)
        self.sink.group_closed(record)

    def submit_pipeline_job(
        self,
        name: str,
        pipeline_id: str,
        priority: Priority,
        instances: Sequence[InstanceReceived],
        *,
        inputs: Sequence[InputOffset] = (),
        pipeline_name: str = "",
        group_key: str = "",
    ) -> GroupClosed:
        """Submit one pipeline job with ``instances`` (Clara's ``SubmitPipelineJob``).

        Recorded as a ``group.closed`` with one job, so custom processors get the same
        ledger, submitter and exactly-once treatment. ``name`` is fixed as Clara's
        ``FixJobName``; pass ``inputs`` (the positions the instances came from) so a
        replay skips them. The job id is uuid5 of processor, AE, pipeline, group key
        (default: the name) and first input (or first SOP Instance UID).
        """
        record = self.pipeline_job_record(
            name,
            pipeline_id,
            priority,
            instances,
            inputs=inputs,
            pipeline_name=pipeline_name,
            group_key=group_key,
        )
        self.close_group(record)
        return record

    def pipeline_job_record(
        self,
        name: str,
        pipeline_id: str,
        priority: Priority,
        instances: Sequence[InstanceReceived],
        *,
        inputs: Sequence[InputOffset] = (),
        pipeline_name: str = "",
        group_key: str = "",
    ) -> GroupClosed:
        """The ``group.closed`` :meth:`submit_pipeline_job` writes, without writing it
        (for processors that write it themselves, e.g. awaiting a durable sink)."""
        if not pipeline_id or not pipeline_id.strip():
            raise ValueError(f"{self.name} {self._ae_title}: pipeline id is blank")
        if not instances:
            raise ValueError(f"{self.name} {self._ae_title}: a job needs at least one instance")
        fixed = fix_job_name(name)
        key = group_key or fixed
        first = instances[0]
        if inputs:
            identity_key, anchor = key, inputs[0]
        else:  # no log position: anchor the id on the first instance instead
            identity_key, anchor = f"{key}\x1f{first.sop_instance_uid}", InputOffset(-1, 0)
        times = [i.received_at for i in instances]
        pipeline = pipeline_name or pipeline_id
        spec = JobSpec(
            job_id=job_id(
                self.name,
                self._ae_title,
                pipeline,
                identity_key,
                first_partition=anchor.partition,
                first_offset=anchor.offset,
            ),
            name=fixed,
            pipeline_name=pipeline_name,
            pipeline_id=pipeline_id.strip(),
            priority=priority,
        )
        record = GroupClosed(
            processor=self.name,
            ae_title=self._ae_title,
            group_by="",
            group_key=key,
            reason=REASON_SUBMITTED,
            first_received_at=min(times),
            last_received_at=max(times),
            instances=tuple(to_group_instance(i) for i in instances),
            inputs=tuple(inputs),
            jobs=(spec,),
            patient_id=first.patient_id,
        )
        return record

    def remove_instances(self, instances: Sequence[InstanceRef], reason: str = "removed") -> None:
        """Hand instance files to the reclaimer (Clara's ``RemoveInstances``)."""
        if instances:
            self.counters.removed += len(instances)
            self.sink.remove_instances(self._ae_title, instances, reason)


def to_group_instance(instance: InstanceReceived) -> GroupInstance:
    """The part of an instance a closed group keeps (enough to stage and reclaim it)."""
    return GroupInstance(
        sop_instance_uid=instance.sop_instance_uid,
        study_instance_uid=instance.study_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        uri=instance.uri,
    )
