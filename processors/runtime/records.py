"""The records the runtime writes: keys, deterministic envelope ids, removal requests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from processors.base import InstanceRef, to_group_instance
from processors.reclaim import removal_request
from streams.events import GroupClosed, GroupInstance, InstanceReceived

EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-stream-adapter:group-closed")


def record_key(record: GroupClosed) -> str:
    """``<called_ae>/<PatientID>``, the key of both topics (DESIGN.md §3.3)."""
    return f"{record.ae_title}/{record.patient_id}"


def event_id(topic: str, record: GroupClosed) -> str:
    """A deterministic envelope id when the record is determined by the log (its first
    job id, or its first input), else a random one."""
    if record.jobs:
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{topic}/job/{record.jobs[0].job_id}"))
    if record.inputs:
        first = record.inputs[0]
        name = f"{topic}/{record.ae_title}/{first.partition}/{first.offset}/{record.reason}"
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))
    return str(uuid.uuid4())


def _as_group_instance(instance: InstanceRef) -> GroupInstance:
    if isinstance(instance, GroupInstance):
        return instance
    if isinstance(instance, InstanceReceived):
        return to_group_instance(instance)
    return GroupInstance(
        sop_instance_uid=instance.sop_instance_uid,
        study_instance_uid=str(getattr(instance, "study_instance_uid", "")),
        series_instance_uid=str(getattr(instance, "series_instance_uid", "")),
        uri=instance.uri,
    )


def removal_without_input(
    *,
    processor: str,
    ae_title: str,
    instances: Sequence[InstanceRef],
    reason: str,
    group: GroupClosed | None,
    now_ms: int,
) -> GroupClosed:
    """A removal request without inputs; times and patient from ``group`` when given."""
    received = [i for i in instances if isinstance(i, InstanceReceived)]
    if group is None and len(received) == len(instances):
        return removal_request(
            processor=processor, ae_title=ae_title, instances=received, reason=reason
        )
    last = group.last_received_at if group is not None else now_ms
    return GroupClosed(
        processor=processor,
        ae_title=ae_title,
        group_by="",
        group_key="",
        reason=reason,
        first_received_at=group.first_received_at if group is not None else last,
        last_received_at=last,
        instances=tuple(_as_group_instance(i) for i in instances),
        inputs=(),
        jobs=(),
        patient_id=group.patient_id if group is not None else "",
    )
