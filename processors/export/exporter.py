"""The exporter: ``export.requested`` → attempts → ``export.completed`` / ``export.failed``.

A :class:`~streams.kafka.LogHandler` of ``<prefix>.exports``, shaped like the submitter
(:mod:`processors.submit.service`): every event is folded into an
:class:`~processors.export.state.ExportLedger`; once a partition's history is read, its
open exports (pending, or failed and due) are attempted by :meth:`ExportService.run`
with :class:`~processors.export.service.ExportWorker`, at most ``concurrency`` at a time,
sleeping until the next ``retry_at``. Only the owner of a request's partition attempts
it, so one request has one exporter. An offset is committable only up to the oldest
record that opened a still-open export; a revoked partition's in-flight attempts finish
(and write their events) before it is handed over.

Events are written with ``acks=all``, retried through broker outages
(:func:`streams.kafka.publish_until_acked`); when the role stops meanwhile the attempt is
abandoned and the next owner redoes it from the ledger: peers keep one copy per SOP
Instance UID, and the fold never sends what an event says is delivered.

Staged files (``<storage>/exports/<request_id>/``) are removed once every destination of
the request completed, or ``retention_s`` after it was dead-lettered (0: kept).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from processors.export.plan import due, next_due_at
from processors.export.senders import Sender
from processors.export.service import ExportWorker
from processors.export.state import ExportLedger, ExportState
from processors.submit.backoff import RetryPolicy
from streams import metrics
from streams.events import (
    Envelope,
    ExportCompleted,
    ExportFailed,
    ExportRequested,
    ExportRetryRequested,
)
from streams.kafka import Publisher, committable_offset, publish_until_acked
from streams.lifecycle import first_of
from streams.storage.exports import export_dir, remove_export_dir

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (request_id, destination)


class ExportStoppedError(Exception):
    """The role stopped before an event was acknowledged; the attempt is abandoned."""


class ExportService:
    """Own, attempt and settle the exports of ``<prefix>.exports``; see the module.

    ``clock`` returns epoch seconds and ``rand`` a float in ``[0, 1)``; both injected.
    """

    def __init__(
        self,
        *,
        storage: Path,
        senders: Mapping[str, Sender],
        publisher: Publisher,
        topic: str,
        policy: RetryPolicy,
        source: str,
        batch_size: int = 100,
        retention_s: float = 0.0,
        concurrency: int = 4,
        sweep_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.publisher = publisher
        self.topic = topic
        self.retention_s = retention_s
        self.concurrency = max(1, concurrency)
        self.sweep_interval_s = sweep_interval_s
        self.clock = clock
        self.ledger = ExportLedger()
        self.worker = ExportWorker(
            ledger=self.ledger,
            senders=senders,
            publish=self._publish,
            topic=topic,
            source=source,
            policy=policy,
            batch_size=batch_size,
            clock=clock,
            rand=rand,
        )
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._partition_of: dict[str, int] = {}  # request id -> partition
        self._live: set[int] = set()
        self._position: dict[int, int] = {}
        # open export -> (partition, offset of the record that opened it); kept across
        # rebalances, so a replay that changes nothing leaves it right
        self._opened_by: dict[Key, tuple[int, int]] = {}
        self._inflight: dict[Key, asyncio.Event] = {}  # set when the attempt ends
        self._to_clean: set[str] = set()
        self._cleaned: set[str] = set()
        self.failure: BaseException | None = None

    # -- LogHandler ----------------------------------------------------------------------

    def assigned(self, partitions: frozenset[int]) -> None:
        """Fold these partitions from their beginning; attempt nothing until caught up."""
        self._live -= partitions
        self._position.update(dict.fromkeys(partitions, 0))

    async def revoked(self, partitions: frozenset[int]) -> None:
        """Stop attempting these partitions; let their in-flight attempts finish."""
        self._live -= partitions
        running = [
            e for k, e in self._inflight.items() if self._partition_of.get(k[0]) in partitions
        ]
        for done in running:
            await done.wait()
        for p in partitions:
            self._position.pop(p, None)
        self._count_open()

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Fold one event; attempt what it opened once the partition is live."""
        self._position[partition] = offset + 1
        changed = self.ledger.apply(key, env)
        opens = isinstance(env.data, ExportRequested | ExportRetryRequested)
        for state in changed:
            self._partition_of.setdefault(state.request_id, partition)
            if opens and state.is_open:
                self._opened_by.setdefault(state.key, (partition, offset))
                self._cleaned.discard(state.request_id)
            self._after_change(state)
        if changed:
            self._wake.set()

    def caught_up(self, partition: int) -> None:
        """History read: attempt every open export of the partition, tidy settled ones."""
        self._live.add(partition)
        opened = 0
        for state in self.ledger:
            if self._partition_of.get(state.request_id) != partition:
                continue
            if state.is_open and state.requested:
                opened += 1
            elif not state.is_open:
                self._to_clean.add(state.request_id)
        self._count_open()
        self._wake.set()
        log.info("exporter: partition %d ready, %d open export(s)", partition, opened)

    def committable(self, partition: int) -> int | None:
        """The oldest record that opened a still-open export, else everything folded."""
        return committable_offset(
            self._opened_by.values(), self._position.get(partition), partition
        )

    # -- the worker loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Attempt due exports until ``stop``; in-flight attempts finish (or, waiting on a
        broker that does not answer, are abandoned) first. Raises what broke an attempt
        (a bug: the restarted role redoes it from the ledger)."""
        self._stop = stop
        tasks: set[asyncio.Task[None]] = set()
        next_sweep = self.clock()
        while not stop.is_set() and self.failure is None:
            self._wake.clear()
            now = self.clock()
            if now >= next_sweep:
                next_sweep = now + self.sweep_interval_s
                self._sweep(now)
            if self._to_clean:
                await self._clean()
            candidates = self._candidates()
            for state in due(candidates, int(now * 1000)):
                if len(self._inflight) >= self.concurrency:
                    break
                if state.key not in self._inflight:
                    tasks.add(self._start(state.key))
            waiting = [s for s in candidates if s.key not in self._inflight]
            next_at = next_due_at(waiting)
            wait_s = next_sweep - now
            if next_at is not None and len(self._inflight) < self.concurrency:
                wait_s = min(wait_s, max(0.0, next_at / 1000 - now))
            await first_of(stop, self._wake, wait_s)
            tasks = {t for t in tasks if not t.done()}
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.failure is not None:
            raise self.failure

    def _start(self, key: Key) -> asyncio.Task[None]:
        self._inflight[key] = asyncio.Event()
        task = asyncio.create_task(self._attempt(key), name=f"export-{key[0]}-{key[1]}")
        return task

    async def _attempt(self, key: Key) -> None:
        before = self.ledger.get(*key)
        delivered = before.delivered if before is not None else 0
        metrics.export_attempt(key[1])
        try:
            env = await self.worker.attempt(*key)
        except ExportStoppedError:
            log.info("export %s to %s abandoned: the role is stopping", *key)
            return
        except Exception as exc:
            log.exception("export %s to %s failed unexpectedly; stopping the role", *key)
            self.failure = exc
            return
        finally:
            done = self._inflight.pop(key, None)
            if done is not None:
                done.set()
            self._wake.set()
        state = self.ledger.get(*key)
        if env is None or state is None:
            return
        sent = state.delivered - delivered
        if isinstance(env.data, ExportCompleted):
            metrics.export_outcome(key[1], "completed", sent)
        elif isinstance(env.data, ExportFailed):
            outcome: metrics.ExportOutcome = "failed" if env.data.will_retry else "dead_lettered"
            metrics.export_outcome(key[1], outcome, sent)
        self._after_change(state)

    async def _publish(self, topic: str, key: str, env: Envelope) -> None:
        if not await publish_until_acked(self.publisher, topic, key, env, self._stop):
            raise ExportStoppedError(env.type)

    # -- bookkeeping ---------------------------------------------------------------------

    def _candidates(self) -> list[ExportState]:
        out = []
        for k in self._opened_by:
            state = self.ledger.get(*k)
            if state is not None and self._partition_of.get(k[0]) in self._live:
                out.append(state)
        return out

    def _after_change(self, state: ExportState) -> None:
        if state.is_open:
            return
        if self._opened_by.pop(state.key, None) is not None:
            self._count_open()
        if self._partition_of.get(state.request_id) in self._live:
            self._to_clean.add(state.request_id)

    def _count_open(self) -> None:
        live = sum(1 for k in self._opened_by if self._partition_of.get(k[0]) in self._live)
        metrics.set_open_exports(live)

    def _sweep(self, now: float) -> None:
        """Queue settled requests whose dead-letter retention has passed."""
        if self.retention_s <= 0:
            return
        for state in self.ledger:
            rid = state.request_id
            if rid not in self._cleaned and self._partition_of.get(rid) in self._live:
                self._to_clean.add(rid)

    def _removable(self, request_id: str, now: float) -> bool:
        states = self.ledger.request(request_id)
        if not states or any(s.is_open for s in states):
            return False
        if all(s.status == "completed" for s in states):
            return True
        if self.retention_s <= 0:
            return False
        settled = max(h.time for s in states for h in s.history) / 1000
        return now - settled >= self.retention_s

    async def _clean(self) -> None:
        wanted, self._to_clean = self._to_clean, set()
        now = self.clock()
        removable = [r for r in wanted if r not in self._cleaned and self._removable(r, now)]
        for request_id in removable:
            try:
                files = await asyncio.to_thread(remove_export_dir, self.storage, request_id)
            except (OSError, ValueError) as exc:
                log.warning("cannot remove %s: %s", export_dir(self.storage, request_id), exc)
                continue
            self._cleaned.add(request_id)
            if files:
                log.info("export %s settled: removed its %d staged file(s)", request_id, files)
