"""The reclaimer role: delete the files of submitted groups, expire payload folders.

A :class:`~streams.kafka.LogHandler` with its own consumer group. It folds
``<prefix>.jobs`` into a :class:`~processors.reclaim.state.ReclaimLedger`; once a
partition's history is read it reclaims every ready group of the partition, then each
group as it becomes ready. Files go first, then ``instances.removed`` is written (a crash
in between repeats the deletion, which finds the files gone, and writes the event once).

Other roles ask for files to be removed by writing a ``group.closed`` with no jobs (for
instance with ``reason="ignored"`` for instances a processor skipped): the group is ready
at once and its files are reclaimed like any other — through the ledger, so the request
survives crashes and shows in the audit trail (docs/submitters.md).

Payloads (``submitter.payload_retention_hours``): with 0 a group's payload folders go
with its instance files, so the bytes are freed at once; with a finite retention they
expire that long after their job was submitted (the sweep); with ``never`` they stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from processors.reclaim.files import DeleteResult, delete_instances
from processors.reclaim.state import (
    PAYLOAD_EXPIRED,
    ExpiredPayload,
    GroupFiles,
    ReclaimLedger,
    ReclaimPlan,
)
from streams import metrics
from streams.errors import BrokerError
from streams.events import Envelope, GroupClosed, InstancesRemoved, JobSubmitted, envelope
from streams.kafka import Publisher, committable_offset
from streams.storage import remove_payload

log = logging.getLogger(__name__)

KEPT_CHECK_S = 1.0  # how often files kept for a later version are looked at again


#: Longest pause between two sweeps for expired payloads.
MAX_SWEEP_INTERVAL_S = 60.0


def sweep_interval(retention_s: float | None, configured: float | None = None) -> float:
    """How often expired payloads are looked for: ``configured``, else a quarter of the
    retention (so a payload outlives it by at most that), between 0.1 s and a minute."""
    if configured is not None:
        return configured
    if not retention_s:
        return MAX_SWEEP_INTERVAL_S
    return min(MAX_SWEEP_INTERVAL_S, max(0.1, retention_s / 4))


class ReclaimService:
    """Reclaim storage as jobs get submitted; see the module docstring."""

    def __init__(
        self,
        *,
        storage: Path,
        publisher: Publisher,
        topic: str,
        source: str,
        payload_retention_s: float | None = None,
        clock: Callable[[], float] = time.time,
        sweep_interval_s: float | None = None,
    ) -> None:
        self.storage = storage
        self.publisher = publisher
        self.topic = topic
        self.source = source
        # None: payloads are kept (never expire); 0: removed with the group's files
        self.retention_ms: int | None = (
            None if payload_retention_s is None else round(payload_retention_s * 1000)
        )
        self.clock = clock
        self.sweep_interval_s = sweep_interval(payload_retention_s, sweep_interval_s)
        self.ledger = ReclaimLedger(track_payloads=self._expiring)
        self._owned: set[int] = set()
        self._live: set[int] = set()
        self._partition_of_group: dict[str, int] = {}  # unreclaimed groups
        self._partition_of_job: dict[str, int] = {}  # jobs whose payload is to expire
        # (partition, offset) of each record that opened work still to do: the commit
        # bound, so a new owner resumes from the oldest of them (docs/operations.md)
        self._opened: dict[str, tuple[int, int]] = {}
        self._queue: asyncio.Queue[GroupFiles] = asyncio.Queue()
        self._queued: set[str] = set()
        self._position: dict[int, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def _expiring(self) -> bool:
        """Payloads expire some time after submission (a finite, non-zero retention)."""
        return self.retention_ms is not None and self.retention_ms > 0

    # -- LedgerHandler -------------------------------------------------------------------

    def assigned(self, partitions: frozenset[int]) -> None:
        """Start folding these partitions from their committed offset, from a clean slate:
        what this process knew of them may be stale (another owner acted meanwhile)."""
        self._forget(partitions)
        self._owned |= partitions
        self._live -= partitions

    async def revoked(self, partitions: frozenset[int]) -> None:
        """Stop acting for these partitions once the current deletion is written."""
        self._owned -= partitions
        self._live -= partitions
        await self._idle.wait()
        for p in partitions:
            self._position.pop(p, None)
        if not partitions & self._owned:  # not assigned back meanwhile
            self._forget(partitions)

    def _forget(self, partitions: frozenset[int]) -> None:
        """Drop the groups and payloads of ``partitions`` (the next owner reads them)."""
        for group_id in [g for g, p in self._partition_of_group.items() if p in partitions]:
            self.ledger.drop_group(group_id)
            del self._partition_of_group[group_id]
        for job_id in [j for j, p in self._partition_of_job.items() if p in partitions]:
            self.ledger.drop_job(job_id)
            del self._partition_of_job[job_id]
        for key in [k for k, (p, _) in self._opened.items() if p in partitions]:
            del self._opened[key]

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Fold one event; queue groups that became ready on a live partition."""
        self._position[partition] = offset + 1
        for group in self.ledger.apply(key, env):
            # the partition of its group.closed, which the group's events share
            self._partition_of_group.setdefault(group.group_id, partition)
            if partition in self._live:
                self._enqueue(group)
        data = env.data
        if isinstance(data, GroupClosed) and env.id in self.ledger.groups:
            self._partition_of_group.setdefault(env.id, partition)
            self._opened.setdefault(env.id, (partition, offset))
        elif isinstance(data, JobSubmitted) and self.ledger.payload_pending(data.job_id):
            self._partition_of_job.setdefault(data.job_id, partition)
            self._opened.setdefault(f"payload:{data.job_id}", (partition, offset))
        elif isinstance(data, InstancesRemoved):
            self._done(data)

    def caught_up(self, partition: int) -> None:
        """History read: queue every ready group of the partition."""
        self._live.add(partition)
        for group in self.ledger.ready():
            if self._partition_of_group.get(group.group_id) == partition:
                self._enqueue(group)

    def committable(self, partition: int) -> int | None:
        """The oldest record that opened work still to do (a group not reclaimed, a
        payload not expired), else everything folded."""
        if self._queued:
            return None
        return committable_offset(self._opened.values(), self._position.get(partition), partition)

    def _done(self, removed: InstancesRemoved) -> None:
        """Forget the bookkeeping of work an ``instances.removed`` finished."""
        if removed.group_event_id and removed.group_event_id not in self.ledger.groups:
            self._opened.pop(removed.group_event_id, None)
            self._partition_of_group.pop(removed.group_event_id, None)
        for job_id in removed.job_ids:
            if not self.ledger.payload_pending(job_id):
                self._opened.pop(f"payload:{job_id}", None)
                self._partition_of_job.pop(job_id, None)

    # -- work ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Reclaim queued groups and sweep expired payloads until ``stop``."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._reclaim_loop(stop))
            tasks.create_task(self._kept_loop(stop))
            if self._expiring:
                tasks.create_task(self._sweep_loop(stop))

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                return
            group = getter.result()
            self._idle.clear()
            try:
                await self.reclaim(group, stop)
            finally:
                self._queued.discard(group.group_id)
                self._idle.set()

    async def reclaim(self, group: GroupFiles, stop: asyncio.Event) -> InstancesRemoved | None:
        """Delete one ready group's files and write ``instances.removed``."""
        if group.reclaimed or self._partition_of_group.get(group.group_id) not in self._live:
            return None
        plan = self.ledger.plan(group, int(self.clock() * 1000))
        # Retention 0: the payloads go first, so the instance files hold their last link
        # and their bytes are really freed (and counted) when they are deleted.
        payloads = group.job_ids if self.retention_ms == 0 else ()
        payload_freed, result = await asyncio.to_thread(self._delete, group, plan, payloads)
        freed = payload_freed + result.bytes_freed
        metrics.bytes_reclaimed(freed)
        event = InstancesRemoved(
            sop_instance_uids=tuple(i.sop_instance_uid for i in result.removed),
            uris=tuple(i.uri for i in result.removed),
            reason="submitted" if group.job_ids else (group.reason or "ignored"),
            ae_title=group.ae_title,
            job_ids=group.job_ids,
            bytes_freed=freed,
            group_event_id=group.group_id,
        )
        env = envelope(event, source=self.source, time_ms=int(self.clock() * 1000))
        if not await self._publish(
            group.key, env, stop, self._partition_of_group.get(group.group_id)
        ):
            return None
        self.ledger.apply(group.key, env)
        self._done(event)
        log.info(
            "reclaimed %d file(s) and %d payload(s), %d bytes, of a group of %s (%d held "
            "for other groups, %d rewritten since, %d refused)",
            len(result.removed), len(payloads), freed, group.ae_title, len(plan.held),
            len(result.rewritten), len(result.refused),
        )  # fmt: skip
        return event

    def _delete(
        self, group: GroupFiles, plan: ReclaimPlan, payloads: tuple[str, ...]
    ) -> tuple[int, DeleteResult]:
        """Remove ``payloads`` (job ids) then the plan's instance files (in a thread)."""
        payload_freed = 0
        for job_id in payloads:
            try:
                payload_freed += remove_payload(self.storage, job_id)[1]
            except (OSError, ValueError) as exc:
                log.warning("cannot remove the payload of job %s: %s", job_id, exc)
        result = delete_instances(self.storage, plan.delete, not_after_ms=group.last_received_at)
        return payload_freed, result

    async def sweep(self, stop: asyncio.Event) -> int:
        """Remove payload folders past retention; returns how many were removed."""
        now_ms = int(self.clock() * 1000)
        done = 0
        for expired in self.ledger.expired_payloads(now_ms, self.retention_ms or 0):
            if stop.is_set():
                break
            if self._partition_of_job.get(expired.job_id) not in self._live:
                continue  # another reclaimer owns it, or its history is still being read
            if await self._expire(expired, stop):
                done += 1
        return done

    async def _expire(self, expired: ExpiredPayload, stop: asyncio.Event) -> bool:
        try:
            files, freed = await asyncio.to_thread(remove_payload, self.storage, expired.job_id)
        except (OSError, ValueError) as exc:
            log.warning("cannot remove the payload of job %s: %s", expired.job_id, exc)
            return False
        metrics.bytes_reclaimed(freed)
        event = InstancesRemoved(
            sop_instance_uids=expired.sop_instance_uids,
            uris=(expired.payload_uri,),
            reason=PAYLOAD_EXPIRED,
            job_ids=(expired.job_id,),
            bytes_freed=freed,
        )
        env = envelope(event, source=self.source, time_ms=int(self.clock() * 1000))
        if not await self._publish(
            expired.key, env, stop, self._partition_of_job.get(expired.job_id)
        ):
            return False
        self.ledger.apply(expired.key, env)
        self._done(event)
        log.info("payload of job %s expired: %d file(s), %d bytes", expired.job_id, files, freed)
        return True

    def queue_kept_due(self) -> int:
        """Queue the groups whose files were kept for a later version until now (on
        live partitions); returns how many were queued."""
        queued = 0
        for group in self.ledger.kept_due(int(self.clock() * 1000)):
            if self._partition_of_group.get(group.group_id) in self._live:
                before = len(self._queued)
                self._enqueue(group)
                queued += len(self._queued) - before
        return queued

    async def _kept_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.queue_kept_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KEPT_CHECK_S)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.sweep_interval_s)

    async def _publish(
        self, key: str, env: Envelope, stop: asyncio.Event, partition: int | None
    ) -> bool:
        """Write ``env`` to ``partition`` (the group's or job's home; ``None``: the key
        decides) until acknowledged; False if ``stop`` came first."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self.publisher.publish(self.topic, key, env, partition=partition)
                return True
            except BrokerError as exc:
                log.warning("cannot write %s, retrying in %.1f s: %s", env.type, delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
        return False

    def _enqueue(self, group: GroupFiles) -> None:
        if group.group_id in self._queued or group.reclaimed:
            return
        self._queued.add(group.group_id)
        self._queue.put_nowait(group)
