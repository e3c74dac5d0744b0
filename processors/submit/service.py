"""The submitter role: ``group.closed`` → staged payload → platform → ``job.submitted``.

It is a :class:`~streams.kafka.LogHandler`: every event of ``<prefix>.jobs``
is folded into a :class:`~processors.submit.state.JobLedger`; once a partition's history
is read, every open job of that partition (pending, or failed and due for a retry) goes
into the :class:`~processors.submit.queue.JobQueue`, and so does each new one. Workers take
jobs by priority, stage the payload, call the platform and write the outcome event with
``acks=all``; the event is folded at once, so a job is never tried twice for one outcome.
Every event of a job is written to the partition of its ``group.closed`` (the job's
home), whatever its key hashes to: a processor fed by a rekeyed topic writes there.
An offset is committable only when every job its record opened is submitted (a
dead-lettered job waits for ``jobs retry``), so a new owner resumes from the committed
offset: start-up reads the open work, not the whole history (docs/operations.md).

Never submitted twice: the ledger is rebuilt before acting, the job id is the idempotency
key (a crash between the platform's answer and the event re-sends the same key), and a
revoked partition's in-flight attempts finish and write their event before the partition
is handed over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from processors.submit.backoff import RetryPolicy
from processors.submit.decide import decide
from processors.submit.platform import PlatformClient, PlatformJob, SubmitOutcome
from processors.submit.queue import JobQueue
from processors.submit.state import JobLedger, JobState
from streams import metrics
from streams.events import Envelope, GroupClosed, GroupInstance, JobRetryRequested, envelope
from streams.kafka import Publisher, committable_offset, publish_until_acked
from streams.lifecycle import first_of
from streams.storage import StagingError, payload_dir, stage_payload

log = logging.getLogger(__name__)


class SubmitService:
    """Submit the jobs of ``<prefix>.jobs``; see the module docstring.

    ``clock`` returns epoch seconds and ``rand`` a float in ``[0, 1)``; both are injected
    so tests can pin them.
    """

    def __init__(
        self,
        *,
        storage: Path,
        platform: PlatformClient,
        publisher: Publisher,
        topic: str,
        policy: RetryPolicy,
        source: str,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        aging_s: float = 60.0,
        concurrency: int = 1,
    ) -> None:
        self.storage = storage
        self.platform = platform
        self.publisher = publisher
        self.topic = topic
        self.policy = policy
        self.source = source
        self.clock = clock
        self.rand = rand
        self.concurrency = max(1, concurrency)
        self.ledger = JobLedger(compact=True)  # submitted jobs drop their instances
        self.queue = JobQueue(aging_s)
        self._partition_of: dict[str, int] = {}
        self._owned: set[int] = set()
        self._live: set[int] = set()
        self._inflight: dict[str, asyncio.Event] = {}  # job id -> set when the attempt ends
        # open job -> (partition, offset of the record that opened it); kept across
        # rebalances, so a replay that changes nothing leaves it right
        self._opened_by: dict[str, tuple[int, int]] = {}
        self._position: dict[int, int] = {}
        self._wake = asyncio.Event()

    # -- LedgerHandler -------------------------------------------------------------------

    def assigned(self, partitions: frozenset[int]) -> None:
        """Start folding these partitions from their committed offset, from a clean slate:
        what this process knew of them may be stale (another owner acted meanwhile)."""
        self._forget(partitions)
        self._owned |= partitions
        self._live -= partitions
        for p in partitions:
            self._position.pop(p, None)

    async def revoked(self, partitions: frozenset[int]) -> None:
        """Drop waiting jobs of these partitions; let their in-flight attempts finish."""
        self._owned -= partitions
        self._live -= partitions
        for job_id, p in self._partition_of.items():
            if p in partitions:
                self.queue.remove(job_id)
        running = [e for j, e in self._inflight.items() if self._partition_of.get(j) in partitions]
        for done in running:
            await done.wait()
        for p in partitions:
            self._position.pop(p, None)
        if not partitions & self._owned:  # not assigned back meanwhile
            self._forget(partitions)

    def _forget(self, partitions: frozenset[int]) -> None:
        """Drop every job of ``partitions`` (the next owner reads them from the ledger)."""
        gone = {j for j, p in self._partition_of.items() if p in partitions}
        gone |= {j for j, (p, _) in self._opened_by.items() if p in partitions}
        for job_id in gone:
            if job_id in self._inflight:
                continue  # its attempt is writing its event; settled when it is folded
            self.ledger.drop(job_id)
            self.queue.remove(job_id)
            self._partition_of.pop(job_id, None)
            self._opened_by.pop(job_id, None)

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Fold one event; schedule the jobs it opened once the partition is live."""
        self._position[partition] = offset + 1
        changed = self.ledger.apply(key, env, partition)
        if isinstance(env.data, GroupClosed | JobRetryRequested):
            for state in changed:
                if state.is_open:  # the group.closed that defines it, if still held
                    self._opened_by.setdefault(state.job_id, (partition, offset))
        self._after_change(partition, changed)

    def caught_up(self, partition: int) -> None:
        """History read: queue every open job of the partition."""
        self._live.add(partition)
        opened = 0
        for job_id, p in self._partition_of.items():
            state = self.ledger.get(job_id)
            if p == partition and state is not None and state.is_open:
                opened += self._schedule(state)
        log.info("submitter: partition %d ready, %d open job(s) queued", partition, opened)

    def committable(self, partition: int) -> int | None:
        """The oldest record defining a job not yet submitted, else everything folded."""
        return committable_offset(
            self._opened_by.values(), self._position.get(partition), partition
        )

    # -- workers -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run ``concurrency`` workers until ``stop``; in-flight attempts finish first."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(self._worker(stop))

    async def _worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            item = self.queue.pop(now)
            if item is None:
                next_at = self.queue.next_ready_at()
                timeout = None if next_at is None else max(0.0, next_at - now)
                self._wake.clear()
                await first_of(stop, self._wake, timeout)
                continue
            done = self._inflight[item.job_id] = asyncio.Event()
            try:
                await self._attempt(item.job_id, stop)
            finally:
                self._inflight.pop(item.job_id, None)
                done.set()
            state = self.ledger.get(item.job_id)
            p = self._partition_of.get(item.job_id)
            if state is not None and state.is_open and p in self._live:
                self._schedule(state)

    async def _attempt(self, job_id: str, stop: asyncio.Event) -> None:
        """One attempt: stage, submit, write the outcome, fold it."""
        state = self.ledger.get(job_id)
        p = self._partition_of.get(job_id)
        if state is None or not state.is_open or p not in self._live:
            return
        attempt = state.attempts + 1
        metrics.submit_attempt()
        job, outcome = await self._try(state, attempt)
        now_ms = int(self.clock() * 1000)
        decision = decide(
            job,
            outcome,
            attempts_in_round=attempt - state.round_start,
            policy=self.policy,
            now_ms=now_ms,
            rand=self.rand,
        )
        env = envelope(decision.event, source=self.source, time_ms=now_ms)
        home = state.partition if state.partition >= 0 else p
        if not await publish_until_acked(
            self.publisher, self.topic, state.key, env, stop, partition=home
        ):
            return
        self._log_outcome(job, outcome, decision.retry_delay_s)
        metrics.job_outcome(_outcome_label(outcome, decision.retry_delay_s), job.priority)
        self._after_change(p, self.ledger.apply(state.key, env))

    async def _try(self, state: JobState, attempt: int) -> tuple[PlatformJob, SubmitOutcome]:
        try:
            staged = await asyncio.to_thread(
                stage_payload, self.storage, state.job_id, state.patient_id, state.instances
            )
        except StagingError as exc:
            job = self._job(state, attempt, str(payload_dir(self.storage, state.job_id)), ())
            if exc.retriable:
                return job, SubmitOutcome.retriable(str(exc))
            return job, SubmitOutcome.permanent(str(exc))
        job = self._job(state, attempt, str(staged.path), staged.instances)
        try:
            return job, await self.platform.submit(job)
        except Exception as exc:  # a platform client must not raise; contain one that does
            log.exception("platform client %s raised for job %s", self.platform.name, job.job_id)
            return job, SubmitOutcome.retriable(f"client error: {type(exc).__name__}: {exc}")

    @staticmethod
    def _job(
        state: JobState, attempt: int, payload_uri: str, instances: tuple[GroupInstance, ...]
    ) -> PlatformJob:
        return PlatformJob(
            job_id=state.job_id,
            name=state.name,
            ae_title=state.ae_title,
            pipeline_name=state.pipeline_name,
            pipeline_id=state.pipeline_id,
            priority=state.priority,
            payload_uri=payload_uri,
            instances=instances,
            attempt=attempt,
            group_key=state.group_key,
        )

    def _log_outcome(self, job: PlatformJob, outcome: SubmitOutcome, delay: float | None) -> None:
        if outcome.kind == "submitted":
            log.info(
                "job %s (%s/%s, %s) submitted on attempt %d",
                job.job_id, job.ae_title, job.pipeline_name, job.priority, job.attempt,
                extra={"job_id": job.job_id},
            )  # fmt: skip
        elif delay is not None:
            log.warning(
                "job %s attempt %d failed, retry in %.3g s: %s",
                job.job_id, job.attempt, delay, outcome.error,
                extra={"job_id": job.job_id},
            )  # fmt: skip
        else:
            log.error(
                "job %s dead-lettered after attempt %d (files kept; `dicom-adapter jobs retry "
                "%s` re-submits it): %s",
                job.job_id, job.attempt, job.job_id, outcome.error,
                extra={"job_id": job.job_id},
            )  # fmt: skip

    # -- bookkeeping ---------------------------------------------------------------------

    def _after_change(self, partition: int | None, changed: tuple[JobState, ...]) -> None:
        for state in changed:
            if state.partition >= 0:  # where its group.closed is: the job's home
                self._partition_of[state.job_id] = state.partition
            elif partition is not None:
                self._partition_of.setdefault(state.job_id, partition)
            if not state.is_open:
                self._settle(state)
            elif self._partition_of.get(state.job_id) in self._live:
                self._schedule(state)

    def _settle(self, state: JobState) -> None:
        self.queue.remove(state.job_id)
        if state.status == "submitted":
            # final: nothing to re-read for it (a dead-lettered job keeps the record that
            # defines it in the commit bound, for `jobs retry` after a restart)
            self._opened_by.pop(state.job_id, None)
            self._partition_of.pop(state.job_id, None)

    def _schedule(self, state: JobState) -> int:
        if state.job_id in self._inflight or state.job_id in self.queue:
            return 0
        if not state.group_event_id:
            # only failures of a job whose group.closed is not in the ledger (truncated
            # by retention?): there is nothing to stage; shown by `jobs`, never submitted
            return 0
        ready_at = state.retry_at / 1000 if state.status == "failed" else 0.0
        self.queue.push(state.job_id, state.priority, state.pending_since / 1000, ready_at)
        self._wake.set()
        return 1


def _outcome_label(outcome: SubmitOutcome, retry_delay_s: float | None) -> metrics.JobOutcome:
    if outcome.kind == "submitted":
        return "submitted"
    return "failed" if retry_delay_s is not None else "dead_lettered"
