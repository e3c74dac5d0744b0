"""``InstanceRouter``: the one observer of the instances topic, dispatching by called AE.

Kafka records arrive on the loop thread in partition order; each ``instance.received``
goes to the processor of its called AE title as ``(partition, offset, instance)``.
Instances for an AE title without a processor are handed to the reclaimer (a removal
request carrying the input, so a replay skips it) and counted. The per-record path is a
type check, two dict lookups and the processor call: no allocation beyond the item.

A record whose envelope id was seen lately on its partition is a re-published copy
(:mod:`processors.runtime.recent`): dropped and counted, never processed twice.

A processor that raises stops the runtime (the record's offset is held, so nothing at
or after it is committed and a restart replays it); so does a record of a partition
whose ledger has not been read yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from reactivex import abc

from processors.base import JobProcessor
from processors.exactly_once import CoveredInputs
from processors.runtime.holds import PartitionHolds
from processors.runtime.recent import RecentIds
from processors.runtime.sink import NO_PROCESSOR, LedgerSink
from streams import metrics
from streams.events import InputOffset, InstanceReceived
from streams.kafka import Record

log = logging.getLogger(__name__)

REASON_NO_PROCESSOR = "ignored"
REASON_DUPLICATE = "duplicate_event"


class InstanceRouter(abc.ObserverBase[Record]):
    """Routes instance records to processors; see the module docstring.

    ``ready`` is the live set of partitions whose ledger was read (the runtime updates
    it), ``covered`` returns the current covered inputs, ``fail`` stops the runtime.
    """

    def __init__(
        self,
        processors: Mapping[str, JobProcessor],
        sink: LedgerSink,
        holds: PartitionHolds,
        *,
        ready: set[int],
        covered: Callable[[], CoveredInputs | None],
        fail: Callable[[BaseException], None],
        recent: RecentIds | None = None,
    ) -> None:
        self._processors = dict(processors)
        self._sink = sink
        self._holds = holds
        self._ready = ready
        self._covered = covered
        self._fail = fail
        self._recent = recent if recent is not None else RecentIds()
        self._stopped: set[int] = set()  # partitions with a held offset after a failure
        self._failed = False
        self._warned: set[str] = set()
        self.unclaimed = 0
        self.other_events = 0
        self.duplicates = 0

    def on_next(self, value: Record) -> None:
        """Dispatch one record (never raises: Rx would detach the observer)."""
        partition, offset = value.partition, value.offset
        if self._failed:
            self._hold_after_failure(partition, offset)
            return
        data = value.envelope.data
        if type(data) is not InstanceReceived:
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
        if self._recent.seen(partition, value.envelope.id):
            self.duplicates += 1
            metrics.instance_ignored(data.called_ae, REASON_DUPLICATE)
            return
        processor = self._processors.get(data.called_ae)
        if processor is None:
            self._unclaimed(partition, offset, data)
            return
        sink = self._sink
        sink.begin(partition, offset, data)
        try:
            processor.on_next((partition, offset, data))
        except Exception as exc:
            self._failure(exc, partition, offset)
        finally:
            sink.end()

    def forget(self, partitions: Iterable[int]) -> None:
        """Forget the ids seen on ``partitions`` (they are about to be read again)."""
        self._recent.forget(partitions)

    def on_error(self, error: Exception) -> None:
        """The consumer failed: stop the runtime."""
        self._failed = True
        self._fail(error)

    def on_completed(self) -> None:
        """Nothing to do: the runtime completes the processors itself."""

    def _unclaimed(self, partition: int, offset: int, instance: InstanceReceived) -> None:
        covered = self._covered()
        if covered is not None and covered.covers(partition, offset):
            return
        self.unclaimed += 1
        ae = instance.called_ae
        if ae not in self._warned:
            self._warned.add(ae)
            log.warning(
                "instances for AE title %s have no job processor here; reclaiming their files "
                "(configure the AE title under scp.ae_titles to process them)",
                ae,
            )
        metrics.instance_ignored(ae, "no_processor")
        self._sink.remove_input(
            NO_PROCESSOR, ae, InputOffset(partition, offset), instance, REASON_NO_PROCESSOR
        )

    def _failure(self, exc: BaseException, partition: int, offset: int) -> None:
        self._failed = True
        self._hold_after_failure(partition, offset)
        self._fail(exc)

    def _hold_after_failure(self, partition: int, offset: int) -> None:
        # Keep this record and everything after it uncommitted: it was not processed.
        if partition not in self._stopped:
            self._stopped.add(partition)
            self._holds.hold(partition, offset)
