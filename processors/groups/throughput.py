"""Throughput over the last hour, per minute, from the jobs ledger (pure).

Counted from the events' own times (``time`` of each envelope): instances grouped
and jobs queued (``group.closed`` with jobs), jobs submitted (``job.submitted``) and
failed attempts (``job.failed``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.events import Envelope, GroupClosed

BUCKET_MS = 60_000
WINDOW_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """One minute: ``start`` (epoch ms) and what happened in it."""

    start: int
    instances: int = 0
    groups: int = 0
    jobs: int = 0
    submitted: int = 0
    failed: int = 0


def throughput(
    envelopes: Iterable[Envelope],
    now_ms: int,
    *,
    window_ms: int = WINDOW_MS,
    bucket_ms: int = BUCKET_MS,
) -> list[Bucket]:
    """``window_ms / bucket_ms`` buckets ending with the one holding ``now_ms``, oldest
    first; events outside the window are not counted."""
    last = now_ms - now_ms % bucket_ms
    count = window_ms // bucket_ms
    first = last - (count - 1) * bucket_ms
    tallies = [[0, 0, 0, 0, 0] for _ in range(count)]
    for env in envelopes:
        if env.time < first or env.time >= last + bucket_ms:
            continue
        tally = tallies[(env.time - first) // bucket_ms]
        data = env.data
        if isinstance(data, GroupClosed):
            if data.jobs:
                tally[0] += len(data.instances)
                tally[1] += 1
                tally[2] += len(data.jobs)
        elif env.type == "job.submitted":
            tally[3] += 1
        elif env.type == "job.failed":
            tally[4] += 1
    return [Bucket(first + i * bucket_ms, *t) for i, t in enumerate(tallies)]
