"""``LedgerSink``: the runtime's ``JobSink`` -- decisions become ``<prefix>.jobs`` records.

Processors call the sink synchronously (from ``on_next`` or a window timer); writing is
asynchronous. Every call appends to ONE FIFO queue that a single worker task publishes
in order (``publish_many``: acks=all, idempotent producer), so records of one partition
reach the ledger in the order they were decided. Only after the broker acknowledged a
record does the worker release the input offset held for it (``held_input``), so a
commit never passes an input whose record is not durable (DESIGN.md §4).

Removals (``remove_instances``) become ``group.closed`` records without jobs
(``processors.reclaim.removal_request``). A removal of the instance being dispatched
carries that instance's input position and holds it, so a replay skips it; a removal
decided right after a group closed (superseded duplicates) is written with that group.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from processors.base import InstanceRef, OffsetHolder
from processors.exactly_once import held_input
from processors.reclaim import removal_request
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.records import event_id, record_key, removal_without_input
from streams import metrics
from streams.errors import BrokerError
from streams.events import Envelope, GroupClosed, InputOffset, InstanceReceived
from streams.events import envelope as make_envelope

log = logging.getLogger(__name__)

NO_PROCESSOR = "no processor"
DEFAULT_MAX_PENDING = 10_000
_BATCH = 2_000


class LedgerPublisher(Protocol):
    """``streams.kafka.EventPublisher`` as the sink uses it."""

    async def publish_many(
        self,
        topic: str,
        items: Iterable[tuple[str, Envelope]],
        *,
        partitions: Sequence[int | None] | None = None,
    ) -> list[tuple[int, int]]:
        """Write events in order (acks=all); return their ``(partition, offset)``."""


@dataclass(slots=True)
class _Write:
    key: str
    record: GroupClosed
    partition: int | None  # jobs partition; None: the key decides
    env: Envelope


@dataclass(slots=True, eq=False)
class _Item:
    ae_title: str
    writes: list[_Write]
    releases: list[InputOffset] = field(default_factory=list)
    done: asyncio.Future[None] | None = None
    taken: bool = False  # the worker is writing it: nothing may be added


class LedgerSink:
    """Writes processors' decisions to the jobs topic; see the module docstring.

    ``holds`` is the consumer's commit tracker by partition, ``index`` is told every
    acknowledged record (for the commit metadata), ``clock`` gives epoch ms (envelope
    time and close-lag metrics), ``timeouts`` the quiet timeout (ms) per AE title for
    the close-lag metric. Run :meth:`run` as a task; :meth:`throttle` is the consumer's
    back-pressure (more than ``max_pending`` unacknowledged records pause fetching).
    """

    def __init__(
        self,
        publisher: LedgerPublisher,
        topic: str,
        *,
        source: str,
        holds: OffsetHolder,
        index: LedgerIndex,
        clock: Callable[[], int],
        timeouts: Mapping[str, int] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._publisher = publisher
        self.topic = topic
        self.source = source
        self._holds = holds
        self._index = index
        self._clock = clock
        self.timeouts: dict[str, int] = dict(timeouts or {})
        self.processor_names: dict[str, str] = {}
        self.max_pending = max_pending
        # The instance being dispatched (the router brackets ``on_next`` with
        # begin/end) and the group queued last in this turn (for its duplicates).
        self._dispatch_instance: InstanceReceived | None = None
        self._dispatch_partition = -1
        self._dispatch_offset = -1
        self._just_closed: _Item | None = None
        self._queue: deque[_Item] = deque()
        self._queued_writes = 0
        self._inflight = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self.error: BaseException | None = None
        self.written = 0

    # -- JobSink -----------------------------------------------------------------------

    def group_closed(self, record: GroupClosed) -> None:
        """Queue ``record``; its held input is released once the broker acknowledged it."""
        timeout = self.timeouts.get(record.ae_title)
        if timeout is not None:
            metrics.group_closed(record.ae_title, self._clock(), record.last_received_at + timeout)
        held = held_input(record)
        releases = [held] if held is not None else []
        if (
            held is not None
            and self._dispatch_instance is not None
            and held.partition == self._dispatch_partition
        ):
            # Closed while an input of its partition is dispatched (e.g. a processor that
            # submits at once): hold it here too, so the commit after this record's
            # dispatch cannot pass it before the ack. Holds are counted; two releases.
            self._holds.hold(held.partition, held.offset)
            releases.append(held)
        item = _Item(record.ae_title, [self._write(record)], releases)
        self._enqueue(item)
        self._just_closed = item

    def begin(self, partition: int, offset: int, instance: InstanceReceived) -> None:
        """An instance is about to be dispatched (its removal carries its position).

        Called per record: plain attributes, no allocation.
        """
        self._dispatch_instance = instance
        self._dispatch_partition = partition
        self._dispatch_offset = offset
        self._just_closed = None

    def end(self) -> None:
        """The dispatch (or timer turn) is over."""
        self._dispatch_instance = None
        self._just_closed = None

    @property
    def dispatching(self) -> tuple[InputOffset, InstanceReceived] | None:
        """``(position, instance)`` being dispatched, if any."""
        instance = self._dispatch_instance
        if instance is None:
            return None
        return InputOffset(self._dispatch_partition, self._dispatch_offset), instance

    async def write_group_closed(self, record: GroupClosed) -> None:
        """Queue ``record`` and return once it is acknowledged (``DurableJobSink``)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held = held_input(record)
        self._enqueue(
            _Item(record.ae_title, [self._write(record)], [held] if held else [], done=done)
        )
        await done

    def remove_instances(
        self, ae_title: str, instances: Sequence[InstanceRef], reason: str
    ) -> None:
        """Queue a removal request (``group.closed`` without jobs) for ``instances``."""
        if not instances:
            return
        label = reason.replace("-", "_")
        for _ in instances:
            metrics.instance_ignored(ae_title, label)
        processor = self.processor_names.get(ae_title, NO_PROCESSOR)
        rest = list(instances)
        current = self.dispatching
        if current is not None and any(i is current[1] for i in rest):
            position, instance = current
            rest = [i for i in rest if i is not instance]
            self.remove_input(processor, ae_title, position, instance, reason)
        if not rest:
            return
        last = self._just_closed
        if last is not None and last.ae_title == ae_title and not last.taken:
            # Decided with the group just queued (its superseded duplicates): written
            # with it, before its input is released.
            group = last.writes[0].record
            record = removal_without_input(
                processor=processor,
                ae_title=ae_title,
                instances=rest,
                reason=reason,
                group=group,
                now_ms=self._clock(),
            )
            last.writes.append(self._write(record, last.writes[0].partition))
            self._queued_writes += 1
            return
        record = removal_without_input(
            processor=processor,
            ae_title=ae_title,
            instances=rest,
            reason=reason,
            group=None,
            now_ms=self._clock(),
        )
        self._enqueue(_Item(ae_title, [self._write(record)]))

    def remove_input(
        self,
        processor: str,
        ae_title: str,
        position: InputOffset,
        instance: InstanceReceived,
        reason: str,
    ) -> None:
        """Queue a removal of one input, holding its offset until the record is durable
        (a replay then skips the input: it is covered)."""
        self._holds.hold(position.partition, position.offset)
        record = removal_request(
            processor=processor,
            ae_title=ae_title,
            instances=[instance],
            inputs=[position],
            reason=reason,
        )
        self._enqueue(_Item(ae_title, [self._write(record)], [position]))

    # -- queue -------------------------------------------------------------------------

    def _write(self, record: GroupClosed, partition: int | None = None) -> _Write:
        if partition is None and record.inputs:
            partition = self._index.jobs_partition_for(record.inputs[0].partition)
        env = make_envelope(
            record, source=self.source, time_ms=self._clock(), event_id=event_id(self.topic, record)
        )
        return _Write(record_key(record), record, partition, env)

    def _enqueue(self, item: _Item) -> None:
        if self._closing:
            # Shutting down: not written, its input stays held (uncommitted) and the
            # next run re-forms it from the log.
            log.debug("sink closed: dropping a record for %s", item.ae_title)
            if item.done is not None:
                item.done.set_exception(BrokerError("the processor runtime is stopping"))
            return
        self._queue.append(item)
        self._queued_writes += len(item.writes)
        self._idle.clear()
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        """Records queued or being written, not yet acknowledged."""
        return self._queued_writes + self._inflight

    async def throttle(self) -> None:
        """Wait while more than ``max_pending`` records are unacknowledged."""
        while self.backlog > self.max_pending and self.error is None and not self._closing:
            self._space.clear()
            await self._space.wait()

    async def drain(self) -> None:
        """Wait until every queued record is acknowledged; raises if writing failed."""
        while self.backlog and self.error is None:
            await self._idle.wait()
        if self.error is not None:
            raise BrokerError(f"writing to {self.topic} failed: {self.error}")

    def close(self) -> None:
        """Take no more records; :meth:`run` returns once the queue is written."""
        self._closing = True
        self._wakeup.set()
        self._space.set()

    async def run(self) -> None:
        """Write queued records in order until :meth:`close`; raises the write error."""
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            items: list[_Item] = []
            writes: list[_Write] = []
            while self._queue and len(writes) < _BATCH:
                item = self._queue.popleft()
                item.taken = True
                items.append(item)
                writes.extend(item.writes)
            self._queued_writes -= len(writes)
            self._inflight = len(writes)
            try:
                placed = await self._publisher.publish_many(
                    self.topic,
                    [(w.key, w.env) for w in writes],
                    partitions=[w.partition for w in writes],
                )
            except BaseException as exc:
                self._failed(exc, items)
                raise
            for write, (jobs_partition, jobs_offset) in zip(writes, placed, strict=True):
                self._index.acked(jobs_partition, jobs_offset, write.record)
            for item in items:
                for position in item.releases:
                    self._holds.release(position.partition, position.offset)
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)
            self._inflight = 0
            self.written += len(writes)
            if self.backlog <= self.max_pending:
                self._space.set()

    def _failed(self, exc: BaseException, items: list[_Item]) -> None:
        self.error = exc
        for item in [*items, *self._queue]:
            if item.done is not None and not item.done.done():
                item.done.set_exception(BrokerError(f"writing to {self.topic} failed: {exc}"))
        self._idle.set()
        self._space.set()
