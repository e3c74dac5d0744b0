"""The records the runtime writes: their keys and deterministic envelope ids."""

from __future__ import annotations

import uuid

from processors.jobnames import uuid5_text
from streams.events import GroupClosed, RecordKeys

EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-stream-adapter:group-closed")


def record_key(record: GroupClosed, keys: RecordKeys) -> str:
    """The key of both topics for ``record``'s patient and AE title
    (:mod:`streams.events.keys`): equal to its instances' keys (co-partitioning)."""
    return keys(record.ae_title, record.patient_id)


def event_id(topic: str, record: GroupClosed) -> str:
    """A deterministic envelope id when the record is determined by the log (its first
    job id, or its first input), else a random one."""
    if record.jobs:
        return uuid5_text(EVENT_ID_NAMESPACE, f"{topic}/job/{record.jobs[0].job_id}")
    if record.inputs:
        first = record.inputs[0]
        name = f"{topic}/{record.ae_title}/{first.partition}/{first.offset}/{record.reason}"
        return uuid5_text(EVENT_ID_NAMESPACE, name)
    return str(uuid.uuid4())
