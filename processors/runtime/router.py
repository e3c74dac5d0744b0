"""``InstanceRouter``: the one observer of the instances topic, dispatching by called AE.

Kafka records arrive on the loop thread in partition order; each ``instance.received``
goes to the processor of its called AE title as ``(partition, offset, instance, log
time)``. An instance of an AE title no processor here serves is left alone: it belongs
to the processes that serve it (their consumer groups read it too), and nothing here
reclaims it (issue 14). The runtime hands the router whole batches
(:meth:`InstanceRouter.on_batch`, from ``KafkaSource.record_batches``): the per-record
path is a type check, three dict lookups and an item appended to the processor's run;
the processor gets the run in one call.

``clock.tick`` records move every processor's clock on their partition
(:meth:`~processors.base.JobProcessor.on_watermark`); a ``group.close_requested`` goes
to the processor of its AE title.

A record whose envelope id was seen lately on its partition is a re-published copy
(:mod:`processors.runtime.recent`): dropped and counted, never processed twice.

A processor that raises stops the runtime; so does a record of a partition whose ledger
has not been read yet. Either way the router keeps the record's offset as the
partition's commit bound (:meth:`InstanceRouter.stopped_at`), so nothing at or after it
is committed and a restart replays it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from reactivex import abc

from processors.base import InstanceItem, JobProcessor
from processors.contracts import JobSink
from processors.exactly_once import CoveredInputs
from processors.runtime.recent import RecentIds
from streams import metrics
from streams.events import ClockTick, GroupCloseRequested, InstanceReceived
from streams.kafka import Record

log = logging.getLogger(__name__)

REASON_DUPLICATE_EVENT = "duplicate_event"


class InstanceRouter(abc.ObserverBase[Record]):
    """Routes instance records to processors; see the module docstring.

    ``ready`` is the live set of partitions whose ledger was read (the runtime updates
    it), ``covered`` returns the current covered inputs, ``fail`` stops the runtime.
    """

    def __init__(
        self,
        processors: Mapping[str, JobProcessor],
        sink: JobSink,
        *,
        ready: set[int],
        covered: Callable[[], CoveredInputs | None],
        fail: Callable[[BaseException], None],
        recent: RecentIds | None = None,
    ) -> None:
        self._processors = dict(processors)
        self._sink = sink
        self._ready = ready
        self._covered = covered
        self._fail = fail
        self._recent = recent if recent is not None else RecentIds()
        self._stopped: dict[int, int] = {}  # partition -> first offset not processed
        self._failed = False
        self._last_instance: dict[int, int] = {}
        self.unclaimed = 0
        self.other_events = 0
        self.duplicates = 0

    def on_next(self, value: Record) -> None:
        """Dispatch one record (never raises: Rx would detach the observer)."""
        self.on_batch((value,))

    def on_batch(self, records: Sequence[Record]) -> None:
        """Dispatch the records of one partition's read, in order (never raises).

        Consecutive instances of one processor go to it as one run
        (:meth:`~processors.base.JobProcessor.on_batch`); any other record first hands
        over the run so far, so every processor sees its inputs and the clock's ticks in
        log order, exactly as one record at a time.
        """
        run: list[InstanceItem] = []
        owner: JobProcessor | None = None
        recent, processors, ready = self._recent, self._processors, self._ready
        for value in records:
            partition, offset = value.partition, value.offset
            if self._failed:
                self._hold_after_failure(partition, offset)
                continue
            data = value.envelope.data
            kind = type(data)
            if kind is InstanceReceived and partition in ready:
                instance: InstanceReceived = data  # type: ignore[assignment]
                if recent.seen(partition, value.envelope.id):
                    self.duplicates += 1
                    metrics.instances_ignored(instance.called_ae, REASON_DUPLICATE_EVENT)
                    continue
                processor = processors.get(instance.called_ae)
                if processor is None:
                    self.unclaimed += 1  # another AE title's: its own processes read it
                    continue
                if processor is not owner:
                    self._hand_over(owner, run)
                    owner, run = processor, []
                self._last_instance[partition] = value.timestamp
                run.append((partition, offset, instance, value.timestamp))
                continue
            self._hand_over(owner, run)
            owner, run = None, []
            self._other(value, kind)
        self._hand_over(owner, run)

    def _hand_over(self, processor: JobProcessor | None, run: list[InstanceItem]) -> None:
        if processor is None or not run or self._failed:
            return
        try:
            processor.on_batch(run)
        except Exception as exc:
            # The run's first input stays uncommitted: a restart replays all of it (the
            # inputs a closed group already covers are skipped then).
            self._failure(exc, run[0][0], run[0][1])

    def _other(self, value: Record, kind: type) -> None:
        partition, offset = value.partition, value.offset
        if self._failed:
            self._hold_after_failure(partition, offset)
            return
        data = value.envelope.data
        if kind is not InstanceReceived and kind is not ClockTick:
            if kind is GroupCloseRequested:
                self._close_requested(value, data)  # type: ignore[arg-type]
            else:
                self.other_events += 1
            return
        if partition not in self._ready:
            self._failure(
                RuntimeError(
                    f"a record of {value.topic}[{partition}] arrived before the jobs ledger "
                    "was read for that partition; restarting replays it"
                ),
                partition,
                offset,
            )
            return
        self._tick(partition, offset, data.watermark)  # type: ignore[union-attr]

    def _tick(self, partition: int, offset: int, watermark: int) -> None:
        try:
            for processor in self._processors.values():
                processor.on_watermark(partition, watermark)
        except Exception as exc:
            self._failure(exc, partition, offset)

    def _close_requested(self, record: Record, request: GroupCloseRequested) -> None:
        processor = self._processors.get(request.ae_title)
        if processor is None or record.partition not in self._ready or self._failed:
            return
        try:
            outcome = processor.close_requested(record.partition, request)
        except Exception as exc:
            self._failure(exc, record.partition, record.offset)
            return
        log.info(
            "close request for group %s of %s: %s", request.group_id, request.ae_title, outcome
        )

    def last_instance(self, partition: int) -> int | None:
        """The log time of the newest instance seen on ``partition`` (``None``: none)."""
        return self._last_instance.get(partition)

    def stopped_at(self, partition: int) -> int | None:
        """After a failure: the first offset of ``partition`` that was not processed
        (commits stay below it); ``None`` otherwise."""
        return self._stopped.get(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Forget the ids seen on ``partitions`` (they are about to be read again)."""
        self._recent.forget(partitions)
        for partition in partitions:
            self._last_instance.pop(partition, None)

    def on_error(self, error: Exception) -> None:
        """The consumer failed: stop the runtime."""
        self._failed = True
        self._fail(error)

    def on_completed(self) -> None:
        """Nothing to do: the runtime completes the processors itself."""

    def _failure(self, exc: BaseException, partition: int, offset: int) -> None:
        self._failed = True
        self._hold_after_failure(partition, offset)
        self._fail(exc)

    def _hold_after_failure(self, partition: int, offset: int) -> None:
        # Keep this record and everything after it uncommitted: it was not processed.
        self._stopped.setdefault(partition, offset)
