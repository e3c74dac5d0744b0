"""Turn a closed window into the ``group.closed`` ledger record and its jobs (pure).

One job per ``pipeline-*`` in configuration order, each with every instance of the
group de-duplicated by SOP Instance UID (last wins) and the configured priority (seed
§13.1.3). Names and ids are functions of the log (see :mod:`processors.jobnames`).
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.aetitle.settings import AeTitleSettings, format_tag
from processors.jobnames import job_id, job_name
from processors.windows import ClosedGroup
from streams.events import GroupClosed, GroupInstance, InputOffset, InstanceReceived, JobSpec

AeGroup = ClosedGroup[str, InstanceReceived, GroupInstance]


def dedupe_last_wins(
    members: Sequence[GroupInstance],
) -> tuple[tuple[GroupInstance, ...], tuple[GroupInstance, ...]]:
    """``(kept, superseded)``: one instance per SOP Instance UID, the last received.

    ``kept`` is in the order of the kept (last) arrivals. ``superseded`` lists earlier
    copies stored under a *different* file than the kept one (their files would
    otherwise never be reclaimed); a copy at the same URI is the kept file itself.
    """
    last = {m.sop_instance_uid: i for i, m in enumerate(members)}
    if len(last) == len(members):
        return tuple(members), ()
    kept = tuple(m for i, m in enumerate(members) if last[m.sop_instance_uid] == i)
    kept_uri = {m.sop_instance_uid: m.uri for m in kept}
    seen: set[str] = set()
    superseded: list[GroupInstance] = []
    for i, m in enumerate(members):
        stale = last[m.sop_instance_uid] != i and m.uri != kept_uri[m.sop_instance_uid]
        if stale and m.uri not in seen:
            seen.add(m.uri)
            superseded.append(m)
    return kept, tuple(superseded)


def build_group_closed(
    group: AeGroup, *, processor: str, ae_title: str, settings: AeTitleSettings
) -> tuple[GroupClosed, tuple[GroupInstance, ...]]:
    """The ``group.closed`` record of a closed window, and the superseded duplicates.

    The job name's timestamp is the group's deadline (last ``received_at`` + timeout),
    the job id uuid5 of (processor, AE, pipeline, group key, first input).
    """
    kept, superseded = dedupe_last_wins(group.members)
    partition, first_offset = group.partition, group.offsets[0]
    jobs = tuple(
        JobSpec(
            job_id=job_id(
                processor,
                ae_title,
                name,
                group.key,
                first_partition=partition,
                first_offset=first_offset,
            ),
            name=job_name(ae_title, name, group.deadline),
            pipeline_name=name,
            pipeline_id=pipeline_id,
            priority=settings.priority,
        )
        for name, pipeline_id in settings.pipelines
    )
    record = GroupClosed(
        processor=processor,
        ae_title=ae_title,
        group_by=format_tag(settings.group_by),
        group_key=group.key,
        reason=group.reason,
        first_received_at=group.first_received_at,
        last_received_at=group.last_received_at,
        instances=kept,
        inputs=tuple(InputOffset(partition, offset) for offset in group.offsets),
        jobs=jobs,
        patient_id=group.opener.patient_id,
    )
    return record, superseded
