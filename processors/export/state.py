"""The export ledger fold: events of ``<prefix>.exports`` → one state per (request, destination).

Pure (no I/O, no clock), like :mod:`processors.submit.state`: the exporter rebuilds from
it what is still owed after a restart, and ``dicom-adapter export list/show`` shows it.
Replaying the same events gives the same states; applying an event twice changes
nothing (the exporter folds its own events when it writes them and again when it reads
them back): an envelope id already applied to a state is skipped, and

* delivery is a fact: a file confirmed by the peer (``sent``) stays delivered, whatever
  comes later, so a retry — after a crash or a partial failure — sends only the rest
  (idempotent per request, destination and SOP Instance UID);
* ``export.completed`` is final;
* ``export.failed`` counts once per attempt and never for a round a retry closed;
* ``export.retry_requested`` re-opens only a dead-lettered destination and starts a new
  round, in which instances refused for good earlier are owed again.

States: ``pending`` (waiting for the first attempt of a round), ``failed`` (an attempt
failed, another follows at ``retry_at``), ``dead`` (dead-lettered: files kept, waiting for
``export retry``), ``completed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from processors.submit.state import HistoryEntry, RetryRounds
from streams.events import (
    Envelope,
    ExportCompleted,
    ExportFailed,
    ExportInstance,
    ExportProgress,
    ExportRequested,
    ExportRetryRequested,
)

ExportStatus = Literal["pending", "failed", "dead", "completed"]


@dataclass(frozen=True, slots=True)
class FileState:
    """One file of a request at one destination."""

    uri: str
    sop_instance_uid: str = ""  # from the request, or learnt from an attempt
    sop_class_uid: str = ""
    delivered_attempt: int = 0  # the attempt the peer confirmed it in; 0 = not delivered
    code: int | None = None  # the peer's last status for it
    error: str = ""  # why the last attempt did not deliver it
    given_up: bool = False  # refused for good in this round: not sent again until a retry

    @property
    def delivered(self) -> bool:
        """The peer holds it."""
        return self.delivered_attempt > 0


@dataclass(frozen=True, slots=True)
class ExportState(RetryRounds):
    """Everything the ledger says about one request at one destination."""

    request_id: str
    destination: str
    status: ExportStatus
    requested: bool = False  # the export.requested event is in the ledger
    job_id: str = ""
    requested_by: str = ""
    reason: str = ""
    files: tuple[FileState, ...] = ()
    requested_at: int = 0
    pending_since: int = 0  # start of the current round
    attempts: int = 0  # highest attempt with a final event (across rounds)
    round_start: int = 0  # attempts used before the current round
    retry_at: int = 0
    last_error: str = ""
    completed_at: int = 0
    retry_requests: int = 0
    history: tuple[HistoryEntry, ...] = ()
    applied: frozenset[str] = frozenset()  # envelope ids folded into this state

    @property
    def key(self) -> tuple[str, str]:
        """``(request_id, destination)``."""
        return (self.request_id, self.destination)

    @property
    def delivered(self) -> int:
        """How many files the peer holds."""
        return sum(1 for f in self.files if f.delivered)

    def owed(self) -> tuple[FileState, ...]:
        """Files to send in the next attempt, in request order: not delivered, not given
        up in this round, and no other file with the same SOP Instance UID delivered."""
        done = {f.sop_instance_uid for f in self.files if f.delivered and f.sop_instance_uid}
        return tuple(
            f
            for f in self.files
            if not f.delivered and not f.given_up and f.sop_instance_uid not in done
        )

    def given_up(self) -> tuple[FileState, ...]:
        """Files refused for good in this round (they make the round end dead)."""
        return tuple(f for f in self.files if f.given_up and not f.delivered)


class ExportLedger:
    """Mutable holder of the fold; :meth:`apply` is the transition function."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], ExportState] = {}
        self._requests: dict[str, tuple[str, ...]] = {}  # request id -> destinations

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[ExportState]:
        return iter(self._states.values())

    @property
    def states(self) -> Mapping[tuple[str, str], ExportState]:
        """Read-only view by ``(request_id, destination)``."""
        return self._states

    def get(self, request_id: str, destination: str) -> ExportState | None:
        """The state of one request at one destination, if known."""
        return self._states.get((request_id, destination))

    def request(self, request_id: str) -> tuple[ExportState, ...]:
        """Every destination's state of one request, in the request's order."""
        names = self._requests.get(request_id, ())
        return tuple(s for name in names if (s := self.get(request_id, name)) is not None)

    def apply(self, key: str, env: Envelope) -> tuple[ExportState, ...]:
        """Fold one event (``key`` is its Kafka key, the request id); returns the states
        it changed (empty if none)."""
        data = env.data
        if isinstance(data, ExportRequested):
            return tuple(self._requested(env, data))
        if isinstance(data, ExportRetryRequested):
            return tuple(self._retry_requested(env, data))
        if not isinstance(data, ExportProgress | ExportCompleted | ExportFailed):
            return ()
        old = self.get(data.request_id, data.destination)
        if old is None:
            # Outcomes without their request (retention removed it; on one partition the
            # request always comes first): shown by `export list`, never attempted.
            old = ExportState(data.request_id, data.destination, "pending")
            names = self._requests.get(data.request_id, ())
            self._requests[data.request_id] = (*names, data.destination)
        if env.id in old.applied:
            return ()
        new = _outcome(old, env, data)
        # Remember the id even when the event changed nothing: read again later (at
        # another point of the history), it must still change nothing.
        self._states[old.key] = replace(new or old, applied=old.applied | {env.id})
        return () if new is None else (self._states[old.key],)

    def _requested(self, env: Envelope, data: ExportRequested) -> Iterator[ExportState]:
        if any(s.requested for s in self.request(data.request_id)):
            return  # a repeated request: the first one defines it
        files: dict[str, FileState] = {}
        for f in data.files:
            files.setdefault(f.uri, FileState(f.uri, f.sop_instance_uid, f.sop_class_uid))
        names = tuple(dict.fromkeys(data.destinations))
        self._requests[data.request_id] = names
        entry = HistoryEntry(env.time, env.type, 0, data.reason)
        for name in names:
            state = ExportState(
                request_id=data.request_id,
                destination=name,
                status="pending",
                requested=True,
                job_id=data.job_id,
                requested_by=data.requested_by,
                reason=data.reason,
                files=tuple(files.values()),
                requested_at=env.time,
                pending_since=env.time,
                history=(entry,),
                applied=frozenset({env.id}),
            )
            self._states[state.key] = state
            yield state

    def _retry_requested(self, env: Envelope, data: ExportRetryRequested) -> Iterator[ExportState]:
        for old in self.request(data.request_id):
            wanted = not data.destination or data.destination == old.destination
            if not wanted or env.id in old.applied:
                continue
            if old.status != "dead":  # only a dead-lettered export is retried; a no-op
                self._states[old.key] = replace(old, applied=old.applied | {env.id})
                continue
            note = " ".join(x for x in (data.requested_by, data.reason) if x)
            new = replace(
                old,
                status="pending",
                files=tuple(replace(f, given_up=False) for f in old.files),
                round_start=old.attempts,
                pending_since=env.time,
                retry_at=0,
                retry_requests=old.retry_requests + 1,
                history=(*old.history, HistoryEntry(env.time, env.type, old.attempts, note)),
                applied=old.applied | {env.id},
            )
            self._states[new.key] = new
            yield new


def _outcome(
    old: ExportState, env: Envelope, data: ExportProgress | ExportCompleted | ExportFailed
) -> ExportState | None:
    current_round = data.attempt > old.round_start
    files = _mark(old.files, data.instances, data.attempt, current_round)
    if isinstance(data, ExportProgress):
        sent = sum(1 for i in data.instances if i.status == "sent")
        entry = HistoryEntry(env.time, env.type, data.attempt, f"{sent} sent")
        return replace(old, files=files, history=(*old.history, entry))
    if old.status == "completed":
        return None  # final: nothing moves it back
    if isinstance(data, ExportCompleted):
        entry = HistoryEntry(env.time, env.type, data.attempt, f"{len(data.instances)} sent")
        return replace(
            old,
            status="completed",
            files=files,
            attempts=max(old.attempts, data.attempt),
            completed_at=env.time,
            retry_at=0,
            history=(*old.history, entry),
        )
    if not current_round or (data.attempt <= old.attempts and old.status != "pending"):
        return replace(old, files=files) if files != old.files else None  # late or repeated
    return replace(
        old,
        status="failed" if data.will_retry else "dead",
        files=files,
        attempts=max(old.attempts, data.attempt),
        retry_at=data.retry_at if data.will_retry else 0,
        last_error=data.error,
        history=(*old.history, HistoryEntry(env.time, env.type, data.attempt, data.error)),
    )


def _mark(
    files: tuple[FileState, ...],
    instances: Iterable[ExportInstance],
    attempt: int,
    current_round: bool,
) -> tuple[FileState, ...]:
    """Files with an attempt's per-instance outcomes folded in (matched by URI, else by
    SOP Instance UID; instances of unknown files are ignored)."""
    by_uri = {i.uri: i for i in instances}
    by_uid = {i.sop_instance_uid: i for i in by_uri.values() if i.sop_instance_uid}
    out: list[FileState] = []
    for f in files:
        seen = by_uri.get(f.uri) or by_uid.get(f.sop_instance_uid or "-")
        if seen is None or f.delivered:
            out.append(f)
            continue
        uid = f.sop_instance_uid or seen.sop_instance_uid
        if seen.status == "sent":
            out.append(replace(f, sop_instance_uid=uid, delivered_attempt=attempt, code=seen.code))
        else:
            out.append(
                replace(
                    f,
                    sop_instance_uid=uid,
                    code=seen.code,
                    error=seen.error,
                    given_up=f.given_up or (current_round and not seen.retriable),
                )
            )
    return tuple(out)


def fold(entries: Iterable[tuple[str, Envelope]]) -> ExportLedger:
    """Replay ``(key, envelope)`` pairs, oldest first, into a fresh ledger."""
    ledger = ExportLedger()
    for key, env in entries:
        ledger.apply(key, env)
    return ledger
