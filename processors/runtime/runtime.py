"""``ProcessorRuntime``: job processors on a ``KafkaSource``, exactly once (DESIGN.md §4).

    <prefix>.instances --KafkaSource.record_batches--> InstanceRouter --> processor per AE title
                       --KafkaSource.batches--> caught-up flags, failures, metrics
    processors --LedgerSink--> <prefix>.jobs (acks=all) --> LedgerIndex
    commits <-- commit_bound: processors' held offsets, the sink's unacknowledged
                inputs, a failed record; metadata: the ledger position (LedgerIndex)

The runtime knows processors only through the public hooks of
:class:`processors.base.JobProcessor`; it imports no processor implementation.

* **Assignment** (inside the rebalance, while the source keeps the new partitions
  paused): the jobs ledger is read from the positions stored with their commits (or
  its beginning) to its end, the covered inputs handed to every processor, every
  processor told the partitions are not caught up yet; then records flow. If that
  fails the runtime stops (the partitions stay paused) rather than process without
  the ledger.
* **Revocation**: processors drop the open groups of the revoked partitions without
  emitting them, the sink writes what is queued (so the next owner's ledger read sees
  it), then the source commits what is safe with the metadata computed here.
* **Shutdown** (:meth:`ProcessorRuntime.close`): stop reading, complete the processors
  (no partial group is emitted), write what is queued, commit what is safe, leave.

aiokafka rebalances eagerly (every partition is revoked, then the new set assigned), so
each assignment rebuilds the state of all owned partitions from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka.structs import TopicPartition

from processors.base import JobProcessor
from processors.exactly_once import CoveredInputs
from processors.http.readiness import ReadyFlag
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.metadata import decode_positions, encode_positions
from processors.runtime.router import InstanceRouter
from processors.runtime.sink import LedgerSink
from streams import metrics
from streams.errors import AdapterError, BrokerError
from streams.events import GroupClosed
from streams.kafka import BatchEnd, KafkaSource, read_to_end
from streams.kafka.commits import oldest
from streams.kafka.retry import retry_transient

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
_METRICS_INTERVAL_S = 1.0
#: How often an idle runtime reads the jobs partitions' ends (:meth:`LedgerIndex.observed`).
LEDGER_ENDS_INTERVAL_S = 5.0


class ProcessorRoleError(AdapterError):
    """The processor role stopped because a processor, the ledger or Kafka failed; a
    restart replays the log from the last safe commit (nothing is lost or doubled)."""

    retriable = True


class ProcessorRuntime:
    """Drives ``processors`` from a :class:`KafkaSource`; see the module docstring.

    Create it, pass its callbacks to the ``KafkaSource`` (``on_assigned``,
    ``on_revoked``, ``commit_bound``, ``commit_metadata``, ``throttle=sink.throttle``),
    then :meth:`attach` the source before starting it.
    """

    def __init__(
        self,
        processors: Mapping[str, JobProcessor],
        sink: LedgerSink,
        index: LedgerIndex,
        *,
        instances_topic: str,
        jobs_topic: str,
        client_id: str = "dicom-adapter-process",
        assigned: ReadyFlag | None = None,
        ledger_timeout_s: float = 60.0,
    ) -> None:
        self.processors = dict(processors)
        self.sink = sink
        self.index = index
        self.instances_topic = instances_topic
        self.jobs_topic = jobs_topic
        self.client_id = client_id
        self.ledger_timeout_s = ledger_timeout_s
        self._assigned_flag = assigned
        self._ready: set[int] = set()
        self._covered: CoveredInputs | None = None
        self._caught: dict[int, bool] = {}
        self._revoked_bounds: dict[int, int | None] = {}
        self._source: KafkaSource | None = None
        self._metrics_at = 0.0
        self._ends_at = 0.0
        self._observing: asyncio.Future[bool] | None = None
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self.router = InstanceRouter(
            self.processors,
            sink,
            ready=self._ready,
            covered=lambda: self._covered,
            fail=self.fail,
        )
        for ae_title, processor in self.processors.items():
            sink.processor_names[ae_title] = processor.name
            timeout = processor.quiet_timeout_ms
            if timeout is not None:
                sink.timeouts[ae_title] = timeout

    # -- wiring ----------------------------------------------------------------------

    def attach(self, source: KafkaSource) -> None:
        """Subscribe to ``source`` (before it starts)."""
        self._source = source
        source.record_batches.subscribe(self.router.on_batch, self.router.on_error)
        source.batches.subscribe(self._on_batch, self._on_source_error)

    @property
    def assigned_flag(self) -> ReadyFlag | None:
        """Set while this runtime holds partitions (``/readyz``)."""
        return self._assigned_flag

    @property
    def ready_partitions(self) -> frozenset[int]:
        """Instances partitions whose ledger was read and that are being processed."""
        return frozenset(self._ready)

    @property
    def covered(self) -> CoveredInputs | None:
        """The inputs closed groups already consumed (skipped on replay)."""
        return self._covered

    def fail(self, error: BaseException) -> None:
        """Stop the runtime because of ``error`` (logged once)."""
        if self.failure is not None:
            return
        self.failure = error
        log.error("processor role failing: %s", error)
        self.failed.set()

    # -- the commit bound ------------------------------------------------------------

    def commit_bound(self, tp: TopicPartition) -> int | None:
        """The oldest offset of ``tp`` still needed: the first input of an open group
        (each processor's :meth:`~processors.base.JobProcessor.held_offsets`), of a
        record not yet acknowledged (the sink), or a record not processed after a
        failure (the router). Commits never pass it."""
        if tp.topic != self.instances_topic:
            return None
        partition = tp.partition
        if partition in self._revoked_bounds:  # its groups were dropped, not closed
            held = [self._revoked_bounds[partition]]
        else:
            held = [p.held_offsets().get(partition) for p in self.processors.values()]
        return oldest(*held, self.sink.oldest_held(partition), self.router.stopped_at(partition))

    def commit_metadata(self, tp: TopicPartition, offset: int) -> str:
        """The ledger position to store with the commit of ``offset`` on ``tp``."""
        if tp.topic != self.instances_topic:
            return ""
        positions = self.index.positions(tp.partition, offset)
        if self._covered is not None:
            self._covered.prune(tp.partition, offset)
        return encode_positions(positions)

    # -- rebalance callbacks -----------------------------------------------------------

    async def on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        """Rebuild exactly-once state for the assigned partitions (the source delivers
        their records once this returned); raises, and the runtime fails, if it cannot."""
        source = self._require_source()
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.instances_topic)
        try:
            await retry_transient(
                lambda: self._load(source, partitions),
                what=f"rebuilding partitions {partitions} from the ledger",
                timeout_s=self.ledger_timeout_s,
            )
        except BrokerError as exc:
            self.fail(exc)
            raise
        if self._assigned_flag is not None:
            self._assigned_flag.set()

    async def _load(self, source: KafkaSource, partitions: list[int]) -> None:
        commits: dict[int, int] = {}
        stored: dict[int, dict[int, int] | None] = {}
        for p in partitions:
            committed = source.committed_at(TopicPartition(self.instances_topic, p))
            stored[p] = decode_positions(committed.metadata) if committed else None
            if committed is not None:
                commits[p] = committed.offset
        starts = self.index.starts(stored)
        read = await read_to_end(
            source.kafka,
            self.jobs_topic,
            starts,
            client_id=f"{self.client_id}-ledger",
            timeout_s=self.ledger_timeout_s,
        )
        mine = self.sink.input_topic  # records whose inputs are positions of our topic
        records = [
            (r.partition, r.offset, r.envelope.data)
            for r in read.records
            if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.input_topic == mine
        ]
        self.index.forget(self.index.owned - set(partitions))
        for partition in partitions:
            self._revoked_bounds.pop(partition, None)
        covered = self.index.load(partitions, commits, records, read.ends)
        self._covered = covered
        for processor in self.processors.values():
            processor.set_covered(covered)
            for partition in partitions:
                processor.partition_caught_up(partition, False)
        self.router.forget(partitions)
        self._ready.update(partitions)
        log.info(
            "partitions %s of %s ready: ledger %s read from %s (%d group records, %d covered "
            "inputs to skip)",
            partitions, self.instances_topic, self.jobs_topic, starts, len(records), len(covered),
        )  # fmt: skip

    async def on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Drop open groups of revoked partitions, write what is queued (the source then
        commits what is safe, with :meth:`commit_metadata`)."""
        partitions = sorted(tp.partition for tp in revoked if tp.topic == self.instances_topic)
        self._ready.difference_update(partitions)
        self.router.forget(partitions)
        for partition in partitions:
            self._caught.pop(partition, None)
            # Open groups are dropped below, not closed: the commit that follows must
            # still stay below their first inputs, so the next owner re-forms them.
            self._revoked_bounds[partition] = oldest(
                *(p.held_offsets().get(partition) for p in self.processors.values())
            )
        for processor in self.processors.values():
            processor.partitions_revoked(partitions)
        if self._assigned_flag is not None:
            self._assigned_flag.clear("partitions revoked: rebalancing")
        try:
            await asyncio.wait_for(self.sink.drain(), DRAIN_TIMEOUT_S)
        except Exception as exc:  # the commit still respects every held offset
            self.fail(BrokerError(f"closed groups not written before revocation: {exc}"))
        self._update_metrics()

    # -- batches -----------------------------------------------------------------------

    def _on_batch(self, batch: BatchEnd) -> None:
        for progress in batch.partitions:
            partition = progress.partition
            if progress.topic != self.instances_topic or partition not in self._ready:
                continue
            caught_up = progress.caught_up
            if self._caught.get(partition) is not caught_up:
                self._caught[partition] = caught_up
                for processor in self.processors.values():
                    processor.partition_caught_up(partition, caught_up)
        for ae_title, processor in self.processors.items():
            if processor.failure is not None:
                self.fail(
                    ProcessorRoleError(f"{processor.name} {ae_title} failed: {processor.failure}")
                )
        if self.sink.error is not None:
            self.fail(BrokerError(f"writing to {self.jobs_topic} failed: {self.sink.error}"))
        self._update_metrics(throttled=True)
        loop = asyncio.get_running_loop()
        idle = not self.sink.backlog and (self._observing is None or self._observing.done())
        if idle and self._ready and loop.time() - self._ends_at >= LEDGER_ENDS_INTERVAL_S:
            self._ends_at = loop.time()
            self._observing = asyncio.ensure_future(self.observe_ledger_ends())

    async def observe_ledger_ends(self) -> bool:
        """Read the ends of our jobs partitions while the sink writes nothing, and store
        them with the next commit (:meth:`LedgerIndex.observed`, ``KafkaSource.restamp``:
        also when no input moved); False if the sink wrote meanwhile or the read failed
        (the next try comes with a later batch)."""
        source = self._source
        if source is None or self.sink.backlog:
            return False
        written = self.sink.written
        home = sorted({jp for p in self._ready for jp in self.index.home(p)})
        try:
            _, ends = await source.offsets([TopicPartition(self.jobs_topic, jp) for jp in home])
        except Exception as exc:  # transient: the positions simply stay where they were
            log.debug("reading the ends of %s failed: %s", self.jobs_topic, exc)
            return False
        if self.sink.backlog or self.sink.written != written:
            return False  # a record of ours may lie below these ends unacknowledged
        if self.index.observed({tp.partition: end for tp, end in ends.items()}):
            # an idle input commits nothing: store the moved positions with the last commit
            source.restamp(TopicPartition(self.instances_topic, p) for p in self._ready)
        return True

    def _on_source_error(self, error: Exception) -> None:
        self.fail(BrokerError(f"reading {self.instances_topic} failed: {error}"))

    def _update_metrics(self, *, throttled: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if throttled and loop.time() - self._metrics_at < _METRICS_INTERVAL_S:
            return
        self._metrics_at = loop.time()
        for ae_title, processor in self.processors.items():
            metrics.set_open_groups(ae_title, processor.open_groups)

    # -- shutdown ----------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading, emit no partial group, write what is queued, commit, leave."""
        source = self._source
        if source is not None:
            await source.halt()
        for processor in self.processors.values():
            if not processor.is_stopped:
                processor.on_completed()
        try:
            await asyncio.wait_for(self.sink.drain(), DRAIN_TIMEOUT_S)
        except Exception as exc:  # held offsets stay uncommitted: the next run re-forms
            self.fail(BrokerError(f"closed groups not written at shutdown: {exc}"))
        if self._observing is not None:
            await asyncio.gather(self._observing, return_exceptions=True)
        if self.failure is None:  # the last commit lets the next start skip the tail
            await self.observe_ledger_ends()
        self.sink.close()
        if self._assigned_flag is not None:
            self._assigned_flag.clear("stopping")
        if source is not None:
            await source.stop()

    def _require_source(self) -> KafkaSource:
        if self._source is None:
            raise RuntimeError("ProcessorRuntime.attach(source) was not called")
        return self._source
