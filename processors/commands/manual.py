"""Manual jobs (``jobs resubmit``, ``studies reprocess``): a new job from files on disk.

A manual job is a ``group.closed`` record with ``reason: "manual"``, no inputs (it
consumes nothing from the instances log) and one job per chosen pipeline with a NEW id
(uuid4: a manual job is a new decision, not a re-formed group). The submitter picks it
up like any other job. Every instance file must still be on disk: when retention or
the reclaimer removed some, nothing is written and the error names the missing files.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from processors.aetitle import AeTitleJobProcessor, AeTitleSettings, format_tag
from processors.jobnames import job_name
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.events import GroupClosed, GroupInstance, JobSpec, envelope
from streams.kafka import Connection, EventPublisher
from streams.storage import uri_to_path

REASON_MANUAL = "manual"
PROCESSOR_MANUAL = "manual"
_SHOWN = 10  # missing files named in the error, at most


def missing_files(instances: Sequence[GroupInstance]) -> list[str]:
    """The files of ``instances`` that are not on disk (a URI naming no local file
    counts as missing), as their paths."""
    missing: list[str] = []
    for item in instances:
        try:
            path = uri_to_path(item.uri)
        except ValueError:
            missing.append(item.uri)
            continue
        if not path.is_file():
            missing.append(str(path))
    return missing


def require_files(instances: Sequence[GroupInstance], what: str) -> None:
    """:class:`UsageError` naming the missing files of ``instances`` (none written)."""
    missing = missing_files(instances)
    if not missing:
        return
    shown = ", ".join(missing[:_SHOWN])
    more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
    raise UsageError(
        f"{what}: {len(missing)} of {len(instances)} instance files are gone from disk "
        f"(removed by retention or after submission): {shown}{more}; send them again"
    )


def ae_settings(config: AdapterConfig, ae_title: str) -> AeTitleSettings:
    """The parsed ``processorSettings`` of ``ae_title`` (:class:`UsageError` when the
    config has no such AE title)."""
    for index, ae in enumerate(config.scp.ae_titles):
        if ae.ae_title == ae_title:
            settings, _ = AeTitleJobProcessor.parse_settings(
                ae.ae_title, ae.processor_settings, where=f"scp.ae_titles[{index}]"
            )
            return settings
    have = ", ".join(ae.ae_title for ae in config.scp.ae_titles) or "none"
    raise UsageError(f"AE title {ae_title!r} is not in the config (it has {have}); check --config")


def choose_pipelines(
    settings: AeTitleSettings, ae_title: str, wanted: str | None
) -> list[tuple[str, str]]:
    """``(name, id)`` of pipeline ``wanted`` of the AE title, or all of them."""
    if wanted is None:
        return list(settings.pipelines)
    for name, pipeline_id in settings.pipelines:
        if name == wanted:
            return [(name, pipeline_id)]
    have = ", ".join(name for name, _ in settings.pipelines)
    raise UsageError(
        f"--pipeline {wanted!r}: AE title {ae_title} has no pipeline-{wanted} in the config "
        f"(it has {have})"
    )


def manual_group(
    *,
    ae_title: str,
    group_by: str,
    group_key: str,
    patient_id: str,
    instances: Sequence[GroupInstance],
    pipelines: Sequence[tuple[str, str]],
    priority: str,
    now_ms: int,
    first_received_at: int = 0,
    last_received_at: int = 0,
) -> GroupClosed:
    """The ``group.closed`` of a manual job: new job ids, named at ``now_ms``."""
    jobs = tuple(
        JobSpec(
            job_id=str(uuid.uuid4()),
            name=job_name(ae_title, name, now_ms),
            pipeline_name=name,
            pipeline_id=pipeline_id,
            priority=priority,  # type: ignore[arg-type]
        )
        for name, pipeline_id in pipelines
    )
    return GroupClosed(
        processor=PROCESSOR_MANUAL,
        ae_title=ae_title,
        group_by=group_by,
        group_key=group_key,
        reason=REASON_MANUAL,
        first_received_at=first_received_at or now_ms,
        last_received_at=last_received_at or now_ms,
        instances=tuple(instances),
        inputs=(),
        jobs=jobs,
        patient_id=patient_id,
    )


async def publish_group(kafka: Connection, topic: str, key: str, record: GroupClosed) -> None:
    """Write ``record`` to the jobs topic with ``key`` (acks=all)."""
    now = int(time.time() * 1000)
    env = envelope(record, source="dicom-adapter-cli", time_ms=now)
    async with EventPublisher(kafka, client_id="dicom-adapter-manual") as publisher:
        await publisher.publish(topic, key, env)


def study_group_by() -> str:
    """``(0020,000D)``: a reprocessed study is grouped by Study Instance UID."""
    return format_tag("0020000D")
