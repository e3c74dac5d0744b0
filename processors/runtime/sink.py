"""``LedgerSink``: the runtime's ``JobSink`` -- decisions become ``<prefix>.jobs`` records.

Processors call the sink synchronously (from ``on_next`` or a window timer); writing is
asynchronous. Every call appends to ONE FIFO queue that a single worker task publishes
in order (``publish_many``: acks=all, idempotent producer), so records of one partition
reach the ledger in the order they were decided.

Every call names the inputs it consumed (a record's ``inputs``): the sink keeps, per
instances partition, the oldest input of each record that is queued or being written
(:meth:`LedgerSink.oldest_held`) and lets go of it once the broker acknowledged the
record -- the runtime never commits past it, so a commit never passes an input whose
record is not durable (DESIGN.md §4).

Removals become ``group.closed`` records without jobs
(:func:`processors.reclaim.removal_request`); the superseded copies of a closed group's
instances are written with that group, in the same batch, before its inputs are let go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from processors.contracts import REASON_DUPLICATE, InstanceRef, Removal
from processors.reclaim import removal_request
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.records import event_id, record_key
from processors.windows import REASON_TIMEOUT
from streams import metrics
from streams.errors import BrokerError
from streams.events import Envelope, GroupClosed, InputOffset, RecordKeys
from streams.events import envelope as make_envelope
from streams.kafka import HeldOffsets, Publisher

log = logging.getLogger(__name__)

NO_PROCESSOR = "no processor"
DEFAULT_MAX_PENDING = 10_000
_BATCH = 2_000


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
    holds: list[InputOffset] = field(default_factory=list)
    done: asyncio.Future[None] | None = None


def oldest_inputs(record: GroupClosed) -> list[InputOffset]:
    """The oldest input of ``record`` on each instances partition it read from."""
    oldest: dict[int, int] = {}
    for item in record.inputs:
        if item.offset < oldest.get(item.partition, item.offset + 1):
            oldest[item.partition] = item.offset
    return [InputOffset(p, o) for p, o in sorted(oldest.items())]


class LedgerSink:
    """Writes processors' decisions to the jobs topic; see the module docstring.

    ``keys`` makes the record keys (the bus's secret); ``index`` is told every
    acknowledged record (for the commit metadata), ``input_topic`` is stamped on records
    whose inputs are not on the instances topic (a rekeyed topic:
    ``GroupClosed.input_topic``), ``clock``
    gives epoch ms (envelope time and close-lag metrics), :attr:`timeouts` the quiet
    timeout (ms) per AE title for the close-lag metric and :attr:`processor_names` the
    processor of each AE title. Run :meth:`run` as a task; :meth:`throttle` is the
    consumer's back-pressure (more than ``max_pending`` unacknowledged records pause
    fetching).
    """

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        *,
        source: str,
        index: LedgerIndex,
        clock: Callable[[], int],
        max_pending: int = DEFAULT_MAX_PENDING,
        keys: RecordKeys | None = None,
        input_topic: str = "",
    ) -> None:
        self._publisher = publisher
        self._keys = keys or RecordKeys()
        self.input_topic = input_topic
        self.topic = topic
        self.source = source
        self._index = index
        self._clock = clock
        self.timeouts: dict[str, int] = {}
        self.processor_names: dict[str, str] = {}
        self.max_pending = max_pending
        self._held: HeldOffsets[int] = HeldOffsets()
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

    def group_closed(self, record: GroupClosed, superseded: Sequence[InstanceRef] = ()) -> None:
        """Queue ``record`` (and the removal of ``superseded`` copies, in the same write)."""
        timeout = self.timeouts.get(record.ae_title)
        quiet = timeout is not None and record.reason == REASON_TIMEOUT
        deadline = record.last_received_at + timeout if quiet and timeout is not None else None
        now = self._clock()
        metrics.group_closed(record.ae_title, record.reason, now, deadline)
        first = self._write(record, now=now)
        writes = [first]
        if superseded:
            removal = removal_request(
                processor=record.processor,
                ae_title=record.ae_title,
                instances=superseded,
                reason=REASON_DUPLICATE,
                group=record,
            )
            writes.append(self._write(removal, first.partition, now=now))
        self._enqueue(_Item(record.ae_title, writes, oldest_inputs(record)))

    async def write_group_closed(self, record: GroupClosed) -> None:
        """Queue ``record`` and return once it is acknowledged (``DurableJobSink``)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Item(record.ae_title, [self._write(record)], oldest_inputs(record), done))
        await done

    def remove(self, removal: Removal) -> None:
        """Queue a removal request (``group.closed`` without jobs); its inputs are
        consumed by it (held until it is durable)."""
        if not removal.instances:
            return
        now = self._clock()
        record = removal_request(
            processor=self.processor_names.get(removal.ae_title, NO_PROCESSOR),
            ae_title=removal.ae_title,
            instances=removal.instances,
            inputs=removal.inputs,
            reason=removal.reason,
            now_ms=now,
        )
        writes = [self._write(record, now=now)]
        self._enqueue(_Item(removal.ae_title, writes, oldest_inputs(record)))

    @property
    def index(self) -> LedgerIndex:
        """Where the acknowledged records are (the commit metadata)."""
        return self._index

    # -- the commit bound --------------------------------------------------------------

    def oldest_held(self, partition: int) -> int | None:
        """The oldest input of ``partition`` whose record is not acknowledged yet."""
        return self._held.oldest(partition)

    # -- queue -------------------------------------------------------------------------

    def _write(
        self, record: GroupClosed, partition: int | None = None, *, now: int | None = None
    ) -> _Write:
        if self.input_topic and not record.input_topic:
            record = replace(record, input_topic=self.input_topic)
        if partition is None and record.inputs:
            partition = self._index.jobs_partition_for(record.inputs[0].partition)
        env = make_envelope(
            record,
            source=self.source,
            time_ms=self._clock() if now is None else now,
            event_id=event_id(self.topic, record),
        )
        return _Write(record_key(record, self._keys), record, partition, env)

    def _enqueue(self, item: _Item) -> None:
        if self._closing:
            # Shutting down: not written; its inputs were never committed past, so the
            # next run re-forms it from the log.
            log.debug("sink closed: dropping a record for %s", item.ae_title)
            if item.done is not None:
                item.done.set_exception(BrokerError("the processor runtime is stopping"))
            return
        for position in item.holds:
            self._held.hold(position.partition, position.offset)
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
                for position in item.holds:
                    self._held.release(position.partition, position.offset)
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
