"""The waiting room of the submitter: priority order with aging (pure; time is a parameter).

Order when several jobs are ready: ``immediate > higher > normal > lower`` (Clara Platform's
``JobPriority``, reference §2.2), oldest first within a priority. Anti-starvation by aging:
a job's effective priority rises one level for every ``aging_s`` seconds it has waited
(capped at ``immediate``), and ties go to the job that has waited longest — so a ``lower``
job waits at most ``3 x aging_s`` before it is served ahead of every younger job, however
many urgent ones keep arriving (mercure flips its order every third run instead; peer
notes §2, "Priority and scheduling").

Jobs waiting for a retry are not ready before their ``ready_at``; their waiting time keeps
counting from when they first became pending, so a retried job does not lose its place.

Data structure: one heap per priority ordered by ``(waiting_since, seq)`` — the head of
each heap is its oldest and therefore most-aged job, so a pick compares four heads — plus
a heap of delayed jobs by ``ready_at``. Removal is lazy. Every operation is O(log n).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from streams.events import PRIORITIES, Priority

#: Rank of each priority; higher is served first.
RANK: dict[str, int] = {name: index for index, name in enumerate(PRIORITIES)}
TOP_RANK = len(PRIORITIES) - 1


@dataclass(order=True, slots=True)
class _Entry:
    waiting_since: float
    seq: int
    job_id: str = field(compare=False)
    priority: Priority = field(compare=False)
    ready_at: float = field(compare=False)
    live: bool = field(default=True, compare=False)


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job handed out by :meth:`JobQueue.pop`."""

    job_id: str
    priority: Priority
    waiting_since: float
    effective_rank: int


class JobQueue:
    """Jobs waiting for submission, served by priority with aging.

    ``aging_s <= 0`` turns aging off (strict priority; lower jobs can starve).
    Times are plain seconds from the injected clock; the queue never reads a clock.
    """

    def __init__(self, aging_s: float = 60.0) -> None:
        self.aging_s = aging_s
        self._ready: list[list[_Entry]] = [[] for _ in PRIORITIES]
        self._delayed: list[tuple[float, int, _Entry]] = []
        self._entries: dict[str, _Entry] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def push(
        self, job_id: str, priority: Priority, waiting_since: float, ready_at: float = 0.0
    ) -> None:
        """Add a job (or replace the waiting entry of the same job)."""
        if priority not in RANK:
            raise ValueError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
        self.remove(job_id)
        self._seq += 1
        entry = _Entry(waiting_since, self._seq, job_id, priority, ready_at)
        self._entries[job_id] = entry
        heapq.heappush(self._delayed, (ready_at, entry.seq, entry))

    def remove(self, job_id: str) -> bool:
        """Drop a waiting job (e.g. its partition was revoked); False if it was not here."""
        entry = self._entries.pop(job_id, None)
        if entry is None:
            return False
        entry.live = False
        return True

    def effective_rank(self, priority: Priority, waiting_since: float, now: float) -> int:
        """Priority rank after aging: one level per ``aging_s`` waited, at most immediate."""
        base = RANK[priority]
        if self.aging_s <= 0:
            return base
        waited = max(0.0, now - waiting_since)
        return min(TOP_RANK, base + math.floor(waited / self.aging_s))

    def next_ready_at(self) -> float | None:
        """When the next job is (or was) ready: a time at or before ``now`` means a
        :meth:`pop` now returns a job; ``None`` when the queue is empty."""
        self._prune()
        times = [heap[0].ready_at for heap in self._ready if heap]
        if self._delayed:
            times.append(self._delayed[0][0])
        return min(times) if times else None

    def pop(self, now: float) -> QueuedJob | None:
        """Take the job to submit next at time ``now``; ``None`` if none is ready."""
        self._release(now)
        self._prune()
        best: _Entry | None = None
        best_key: tuple[int, float, int] | None = None
        for heap in self._ready:
            if not heap:
                continue
            head = heap[0]
            key = (-self.effective_rank(head.priority, head.waiting_since, now), *_age_key(head))
            if best_key is None or key < best_key:
                best, best_key = head, key
        if best is None or best_key is None:
            return None
        heapq.heappop(self._ready[RANK[best.priority]])
        del self._entries[best.job_id]
        return QueuedJob(best.job_id, best.priority, best.waiting_since, -best_key[0])

    def _release(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self._delayed)
            if entry.live:
                heapq.heappush(self._ready[RANK[entry.priority]], entry)

    def _prune(self) -> None:
        for heap in self._ready:
            while heap and not heap[0].live:
                heapq.heappop(heap)
        while self._delayed and not self._delayed[0][2].live:
            heapq.heappop(self._delayed)


def _age_key(entry: _Entry) -> tuple[float, int]:
    return (entry.waiting_since, entry.seq)
