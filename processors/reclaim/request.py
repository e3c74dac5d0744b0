"""Asking the reclaimer to delete files that no job needs (e.g. instances a processor ignored).

The request is a ``group.closed`` with no jobs: it is ready at once, so the reclaimer
deletes its files and writes ``instances.removed`` with the request's ``reason``. Going
through the ledger makes the request durable (a crash cannot lose it), auditable, and —
with ``inputs`` — marks the instances as handled for the processors' exactly-once replay.
Write it keyed ``<called_ae>/<PatientID>`` like every other jobs-topic event.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.events import GroupClosed, GroupInstance, InputOffset, InstanceReceived


def removal_request(
    *,
    processor: str,
    ae_title: str,
    instances: Sequence[InstanceReceived],
    inputs: Sequence[InputOffset] = (),
    reason: str = "ignored",
) -> GroupClosed:
    """A ``group.closed`` without jobs asking for ``instances``' files to be deleted.

    ``instances`` should share one PatientID (the event's key). ``last_received_at`` is
    taken from them: the reclaimer keeps a file modified after it (sent again since).
    """
    if not instances:
        raise ValueError("a removal request needs at least one instance")
    received = [i.received_at for i in instances]
    return GroupClosed(
        processor=processor,
        ae_title=ae_title,
        group_by="",
        group_key="",
        reason=reason,
        first_received_at=min(received),
        last_received_at=max(received),
        instances=tuple(
            GroupInstance(
                sop_instance_uid=i.sop_instance_uid,
                study_instance_uid=i.study_instance_uid,
                series_instance_uid=i.series_instance_uid,
                uri=i.uri,
            )
            for i in instances
        ),
        inputs=tuple(inputs),
        jobs=(),
        patient_id=instances[0].patient_id,
    )
