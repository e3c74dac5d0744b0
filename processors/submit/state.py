"""The job ledger fold: events of ``<prefix>.jobs`` → one :class:`JobState` per job id.

Pure (no I/O, no clock): the submitter rebuilds from it what is already submitted,
dead-lettered or still pending after a restart, and ``dicom-adapter jobs`` shows it to
auditors. Replaying the same events always gives the same states, and applying an event
twice changes nothing (the submitter applies its own events when it writes them and
again when it reads them back), so:

* ``job.submitted`` is final: nothing after it moves a job back;
* ``job.failed`` raises ``attempts`` to the event's attempt (never counts twice);
* ``job.retry_requested`` re-opens only a dead-lettered job and starts a new round.

States: ``pending`` (waiting for its first attempt of a round), ``failed`` (an attempt
failed, another will follow), ``dead`` (dead-lettered: files kept, waiting for
``jobs retry``), ``submitted``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from streams.events import (
    Envelope,
    GroupClosed,
    GroupInstance,
    InstancesRemoved,
    JobFailed,
    JobRetryRequested,
    JobSubmitted,
    Priority,
)

if TYPE_CHECKING:
    from streams.kafka import Record

JobStatus = Literal["pending", "failed", "dead", "submitted"]
OPEN_STATUSES: frozenset[str] = frozenset({"pending", "failed"})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a job's timeline (``dicom-adapter jobs show``)."""

    time: int  # event time, epoch ms
    event: str
    attempt: int = 0
    detail: str = ""


class RetryRounds:
    """What the state of something retried in rounds says of its attempts (a job, an
    export): ``attempts`` is the highest attempt written, ``round_start`` the attempts
    used before the current round."""

    __slots__ = ()
    status: str
    attempts: int
    round_start: int

    @property
    def is_open(self) -> bool:
        """Still to be tried (pending, or failed and due again)."""
        return self.status in OPEN_STATUSES

    @property
    def attempts_in_round(self) -> int:
        """Attempts made since the round started (what ``max_attempts`` limits)."""
        return self.attempts - self.round_start


@dataclass(frozen=True, slots=True)
class JobState(RetryRounds):
    """Everything the ledger says about one job."""

    job_id: str
    key: str  # Kafka key of the job's events: <called_ae>/<PatientID>
    status: JobStatus
    # The jobs partition of the group.closed that defines the job (-1: not known). Every
    # event of the job is written there: a processor fed by a rekeyed topic writes its
    # records to its input's partition, which the key alone need not pick.
    partition: int = -1
    name: str = ""
    ae_title: str = ""
    pipeline_name: str = ""
    pipeline_id: str = ""
    priority: Priority = "normal"
    group_key: str = ""
    patient_id: str = ""
    group_event_id: str = ""
    instances: tuple[GroupInstance, ...] = ()
    first_received_at: int = 0
    last_received_at: int = 0
    queued_at: int = 0  # group.closed event time
    pending_since: int = 0  # start of the current round (group closed or retry asked)
    attempts: int = 0  # highest attempt number written so far (across rounds)
    round_start: int = 0  # attempts used before the current round
    retry_at: int = 0
    last_error: str = ""
    last_failed_at: int = 0
    submitted_at: int = 0
    platform_job_id: str = ""
    payload_uri: str = ""
    retry_requests: int = 0
    files_removed_at: int = 0
    history: tuple[HistoryEntry, ...] = ()


class JobLedger:
    """Mutable holder of the fold; :meth:`apply` is the transition function.

    With ``compact`` a job that reaches ``submitted`` (final) is forgotten: only its id
    stays, among the last ``finished_window`` submitted ones (a repeated ``group.closed``
    of one of those is ignored). The submitter never stages it again, and keeping it made
    its memory grow with every job and instance ever submitted (~1.9 KB per job, ~1 KB
    per instance; found by the load test and issue 13). The auditor's fold
    (``dicom-adapter jobs``) keeps everything.
    """

    def __init__(self, *, compact: bool = False, finished_window: int = 10_000) -> None:
        self._jobs: dict[str, JobState] = {}
        self.compact = compact
        # compact: ids of the last submitted (forgotten) jobs, so a repeated group.closed
        # or a late event about one of them changes nothing
        self._finished: OrderedDict[str, None] = OrderedDict()
        self.finished_window = finished_window

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[JobState]:
        return iter(self._jobs.values())

    def drop(self, job_id: str) -> None:
        """Forget a job entirely (its partition went to another owner; a new owner
        rebuilds it from the ledger)."""
        self._jobs.pop(job_id, None)

    @property
    def recently_finished(self) -> tuple[str, ...]:
        """Ids of the last submitted jobs a compact ledger forgot, oldest first."""
        return tuple(self._finished)

    def get(self, job_id: str) -> JobState | None:
        """The state of one job, if the ledger knows it."""
        return self._jobs.get(job_id)

    @property
    def jobs(self) -> Mapping[str, JobState]:
        """Read-only view by job id."""
        return self._jobs

    def apply(self, key: str, env: Envelope, partition: int = -1) -> tuple[JobState, ...]:
        """Fold one event (read from ``partition``, -1: not known); returns the job
        states it changed (empty if none)."""
        data = env.data
        changed: list[JobState] = []
        if isinstance(data, GroupClosed):
            changed.extend(self._group_closed(key, env, data, partition))
        elif isinstance(data, JobSubmitted):
            changed.extend(self._submitted(key, env, data))
        elif isinstance(data, JobFailed):
            changed.extend(self._failed(key, env, data))
        elif isinstance(data, JobRetryRequested):
            changed.extend(self._retry_requested(env, data))
        elif isinstance(data, InstancesRemoved):
            changed.extend(self._removed(env, data))
        return tuple(changed)

    def _put(self, state: JobState) -> JobState:
        self._jobs[state.job_id] = state
        return state

    def _group_closed(
        self, key: str, env: Envelope, data: GroupClosed, partition: int
    ) -> Iterator[JobState]:
        patient = data.patient_id or key.partition("/")[2]
        for spec in data.jobs:
            old = self._jobs.get(spec.job_id)
            if (old is not None and old.group_event_id) or spec.job_id in self._finished:
                continue  # a repeated group.closed: the first one defines the job
            state = JobState(
                job_id=spec.job_id,
                key=key,
                status="pending",
                partition=partition,
                name=spec.name,
                ae_title=data.ae_title,
                pipeline_name=spec.pipeline_name,
                pipeline_id=spec.pipeline_id,
                priority=spec.priority,
                group_key=data.group_key,
                patient_id=patient,
                group_event_id=env.id,
                instances=data.instances,
                first_received_at=data.first_received_at,
                last_received_at=data.last_received_at,
                queued_at=env.time,
                pending_since=env.time,
                history=(HistoryEntry(env.time, env.type, 0, data.reason),),
            )
            if old is not None:
                # outcomes were folded first: a ledger whose job events went to another
                # partition than their group.closed (written before the fix of that);
                # the group.closed still defines the job, the outcomes stay
                state = replace(
                    state,
                    status=old.status,
                    attempts=old.attempts,
                    retry_at=old.retry_at,
                    last_error=old.last_error,
                    last_failed_at=old.last_failed_at,
                    submitted_at=old.submitted_at,
                    platform_job_id=old.platform_job_id,
                    payload_uri=old.payload_uri,
                    round_start=old.round_start,
                    retry_requests=old.retry_requests,
                    files_removed_at=old.files_removed_at,
                    history=(*state.history, *old.history),
                )
            yield self._put(state)

    def _submitted(self, key: str, env: Envelope, data: JobSubmitted) -> Iterator[JobState]:
        old = self._jobs.get(data.job_id)
        if (old is not None and old.status == "submitted") or data.job_id in self._finished:
            return
        entry = HistoryEntry(env.time, env.type, data.attempt, data.platform_job_id)
        if old is None:
            old = JobState(
                job_id=data.job_id,
                key=key,
                status="submitted",
                name=data.name,
                ae_title=data.ae_title,
                pipeline_name=data.pipeline_name,
                pipeline_id=data.pipeline_id,
                priority=data.priority,
                group_key=data.group_key,
                instances=data.instances,
            )
        state = replace(
            old,
            status="submitted",
            instances=() if self.compact else old.instances,
            attempts=max(old.attempts, data.attempt),
            submitted_at=env.time,
            platform_job_id=data.platform_job_id,
            payload_uri=data.payload_uri,
            retry_at=0,
            history=(*old.history, entry),
        )
        if self.compact:
            self._forget(data.job_id)
            yield state
        else:
            yield self._put(state)

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._finished[job_id] = None
        while len(self._finished) > self.finished_window:
            self._finished.popitem(last=False)

    def _failed(self, key: str, env: Envelope, data: JobFailed) -> Iterator[JobState]:
        if data.job_id in self._finished:
            return
        old = self._jobs.get(data.job_id) or JobState(job_id=data.job_id, key=key, status="pending")
        if old.status == "submitted" or (data.attempt <= old.attempts and old.status != "pending"):
            return  # a late or repeated failure changes nothing
        if data.attempt <= old.round_start:
            return  # a failure from a round that a retry request already closed
        yield self._put(
            replace(
                old,
                status="failed" if data.will_retry else "dead",
                attempts=max(old.attempts, data.attempt),
                retry_at=data.retry_at if data.will_retry else 0,
                last_error=data.error,
                last_failed_at=env.time,
                history=(*old.history, HistoryEntry(env.time, env.type, data.attempt, data.error)),
            )
        )

    def _retry_requested(self, env: Envelope, data: JobRetryRequested) -> Iterator[JobState]:
        old = self._jobs.get(data.job_id)
        if old is None or old.status != "dead":
            return  # only a dead-lettered job can be retried; anything else is a no-op
        note = " ".join(x for x in (data.requested_by, data.reason) if x)
        yield self._put(
            replace(
                old,
                status="pending",
                round_start=old.attempts,
                pending_since=env.time,
                retry_at=0,
                retry_requests=old.retry_requests + 1,
                history=(*old.history, HistoryEntry(env.time, env.type, old.attempts, note)),
            )
        )

    def _removed(self, env: Envelope, data: InstancesRemoved) -> Iterator[JobState]:
        if data.reason == "payload_expired":
            return
        for job_id in data.job_ids:
            old = self._jobs.get(job_id)
            if old is None or old.files_removed_at:
                continue
            yield self._put(replace(old, files_removed_at=env.time))


def fold_log(records: Iterable[Record]) -> JobLedger:
    """Replay records of the jobs topic (with their partitions) into a fresh ledger."""
    ledger = JobLedger()
    for record in records:
        ledger.apply(record.key or "", record.envelope, record.partition)
    return ledger


def fold(entries: Iterable[tuple[str, Envelope]]) -> JobLedger:
    """Replay ``(key, envelope)`` pairs, oldest first, into a fresh ledger."""
    ledger = JobLedger()
    for key, env in entries:
        ledger.apply(key, env)
    return ledger
