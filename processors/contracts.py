"""What a job processor is given and where its decisions go (the runtime's side).

A processor writes through a :class:`JobSink`; the runtime implements it by writing
ledger events (``group.closed``) and handing files to the reclaimer. Every call carries
the input positions it consumed, explicitly: nothing is recovered from "the record
being dispatched".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from streams.events import GroupClosed, InputOffset
from streams.kafka import Connection

#: ``reason`` of the removal of superseded copies (an instance received twice).
REASON_DUPLICATE = "duplicate"


class InstanceRef(Protocol):
    """Anything naming an instance file (``InstanceReceived``, ``GroupInstance``)."""

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def uri(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Removal:
    """Instance files no job needs, for the reclaimer (Clara's ``RemoveInstances``).

    ``inputs``: the positions those instances were read at, when this removal is what
    consumed them; a replay then skips them (they are covered).
    """

    ae_title: str
    instances: Sequence[InstanceRef]
    reason: str
    inputs: Sequence[InputOffset] = ()


class JobSink(Protocol):
    """Where a processor's decisions go; the runtime writes them as ledger events."""

    def group_closed(self, record: GroupClosed, superseded: Sequence[InstanceRef] = ()) -> None:
        """Durably record a closed group and its jobs (``group.closed``, acks=all).

        ``superseded``: earlier copies of the group's instances whose files no job
        needs; they are handed to the reclaimer (reason :data:`REASON_DUPLICATE`) in
        the same write. The record's inputs
        stay uncommitted until the broker acknowledged it.
        """

    def remove(self, removal: Removal) -> None:
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

    ``storage`` is the configured storage root; ``kafka`` (the broker) and the topic
    names are those the runtime consumes (``None``/empty when there is no broker, e.g.
    in unit tests); ``grace_ms`` how long after a quiet deadline the wall clock may close a
    group (``processor.grace_ms``). With ``log_clock`` the runtime moves time only with
    the bus's ``clock.tick`` records (:meth:`JobProcessor.on_watermark`) and gives each
    record its log time, never the wall clock (docs/processing.md, "Time").
    """

    storage: Path
    adapter_id: str = ""
    kafka: Connection | None = None
    instances_topic: str = ""
    jobs_topic: str = ""
    grace_ms: int = 1000
    log_clock: bool = False


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
