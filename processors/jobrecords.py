"""The ``group.closed`` of one pipeline job a processor submits itself (pure).

What :meth:`processors.base.JobProcessor.submit_pipeline_job` (Clara's
``SubmitPipelineJob``) records, so custom processors get the same ledger, submitter and
exactly-once treatment as the built-in ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

from processors.jobnames import fix_job_name, job_id
from streams.events import (
    GroupClosed,
    GroupInstance,
    InputOffset,
    InstanceReceived,
    JobSpec,
    Priority,
)

REASON_SUBMITTED = "submitted"


class JobDetails(TypedDict, total=False):
    """Optional details of a submitted job: the input positions of its instances (so a
    replay skips them), the pipeline's name, and the group key (default: the name)."""

    inputs: Sequence[InputOffset]
    pipeline_name: str
    group_key: str


def pipeline_job(
    name: str,
    pipeline_id: str,
    priority: Priority,
    instances: Sequence[InstanceReceived],
    *,
    processor: str,
    ae_title: str,
    **details: Unpack[JobDetails],
) -> GroupClosed:
    """One job of ``instances`` for ``pipeline_id``; the name is fixed as Clara's
    ``FixJobName``; the job id is uuid5 of processor, AE, pipeline, group key and first
    input (or first SOP Instance UID when there are no inputs)."""
    inputs = tuple(details.get("inputs", ()))
    pipeline_name = details.get("pipeline_name", "")
    if not pipeline_id or not pipeline_id.strip():
        raise ValueError(f"{processor} {ae_title}: pipeline id is blank")
    if not instances:
        raise ValueError(f"{processor} {ae_title}: a job needs at least one instance")
    fixed = fix_job_name(name)
    key = details.get("group_key") or fixed
    first = instances[0]
    if inputs:
        identity_key, anchor = key, inputs[0]
    else:  # no log position: anchor the id on the first instance instead
        identity_key, anchor = f"{key}\x1f{first.sop_instance_uid}", InputOffset(-1, 0)
    times = [i.received_at for i in instances]
    spec = JobSpec(
        job_id=job_id(
            processor,
            ae_title,
            pipeline_name or pipeline_id,
            identity_key,
            first_partition=anchor.partition,
            first_offset=anchor.offset,
        ),
        name=fixed,
        pipeline_name=pipeline_name,
        pipeline_id=pipeline_id.strip(),
        priority=priority,
    )
    return GroupClosed(
        processor=processor,
        ae_title=ae_title,
        group_by="",
        group_key=key,
        reason=REASON_SUBMITTED,
        first_received_at=min(times),
        last_received_at=max(times),
        instances=tuple(GroupInstance.of(i) for i in instances),
        inputs=inputs,
        jobs=(spec,),
        patient_id=first.patient_id,
    )
