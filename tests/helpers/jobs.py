"""Build jobs-topic events (group.closed and friends) and instance files for tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from pathlib import Path

from streams.events import (
    Envelope,
    EventData,
    GroupClosed,
    GroupInstance,
    InputOffset,
    JobSpec,
    Priority,
    envelope,
)

_counter = itertools.count(1)


def env(data: EventData, time_ms: int = 1_000, event_id: str | None = None) -> Envelope:
    """Wrap a record in an envelope at ``time_ms``."""
    return envelope(data, source="test", time_ms=time_ms, event_id=event_id)


def write_instances(
    storage: Path,
    *,
    ae: str = "AET1",
    study: str = "1.2.3.1",
    series: Sequence[str] = ("1.2.3.1.1",),
    per_series: int = 2,
    size: int = 64,
) -> list[GroupInstance]:
    """Create instance files ``<storage>/<ae>/<study>/<series>/<sop>.dcm``."""
    out: list[GroupInstance] = []
    for se in series:
        folder = storage / ae / study / se
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(per_series):
            sop = f"1.2.826.0.1.{next(_counter)}"
            path = folder / f"{sop}.dcm"
            path.write_bytes(b"D" * size)
            out.append(GroupInstance(sop, study, se, str(path)))
    return out


def group_closed(
    instances: Sequence[GroupInstance],
    *,
    ae: str = "AET1",
    patient: str = "PAT1",
    jobs: Sequence[tuple[str, Priority]] = (("job-1", "normal"),),
    group_key: str = "1.2.3.1",
    last_received_at: int | None = None,
    reason: str = "timeout",
) -> GroupClosed:
    """A closed group of ``instances`` with one job per ``(job_id, priority)``.

    ``last_received_at`` defaults to now (the reclaimer keeps files written after it).
    """
    if last_received_at is None:
        last_received_at = int(time.time() * 1000)
    return GroupClosed(
        processor="aetitle",
        ae_title=ae,
        group_by="0020000D",
        group_key=group_key,
        reason=reason,
        first_received_at=last_received_at - 500,
        last_received_at=last_received_at,
        instances=tuple(instances),
        inputs=(InputOffset(0, 0),),
        jobs=tuple(
            JobSpec(
                job_id=job_id,
                name=f"{ae.lower()}-p{index}-20240101000000",
                pipeline_name=f"p{index}",
                pipeline_id=f"pipeline-{index}",
                priority=priority,
            )
            for index, (job_id, priority) in enumerate(jobs)
        ),
        patient_id=patient,
    )
