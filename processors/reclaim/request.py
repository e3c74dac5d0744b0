"""Asking the reclaimer to delete files that no job needs (e.g. instances a processor ignored).

The request is a ``group.closed`` with no jobs: it is ready at once, so the reclaimer
deletes its files and writes ``instances.removed`` with the request's ``reason``. Going
through the ledger makes the request durable (a crash cannot lose it), auditable, and —
with ``inputs`` — marks the instances as handled for the processors' exactly-once replay.
Write it keyed ``<called_ae>/<PatientID>`` like every other jobs-topic event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streams.events import GroupClosed, GroupInstance, InputOffset, InstanceReceived


class _Named(Protocol):
    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def uri(self) -> str: ...


def removal_request(
    *,
    processor: str,
    ae_title: str,
    instances: Sequence[_Named],
    inputs: Sequence[InputOffset] = (),
    reason: str = "ignored",
    group: GroupClosed | None = None,
    now_ms: int = 0,
) -> GroupClosed:
    """A ``group.closed`` without jobs asking for ``instances``' files to be deleted.

    ``instances`` are ``InstanceReceived`` or ``GroupInstance`` records of one PatientID
    (the event's key). Times and patient come from ``group`` when the removal was
    decided with a closed group (its superseded copies), else from the instances'
    ``received_at`` (``now_ms`` when they carry none): the reclaimer keeps a file
    modified after ``last_received_at`` (it was sent again since).
    """
    if not instances:
        raise ValueError("a removal request needs at least one instance")
    received = [i.received_at for i in instances if isinstance(i, InstanceReceived)]
    if group is not None:
        first, last, patient = group.first_received_at, group.last_received_at, group.patient_id
    elif received:
        first, last = min(received), max(received)
        patient = next(i.patient_id for i in instances if isinstance(i, InstanceReceived))
    else:
        first = last = now_ms
        patient = ""
    return GroupClosed(
        processor=processor,
        ae_title=ae_title,
        group_by="",
        group_key="",
        reason=reason,
        first_received_at=first,
        last_received_at=last,
        instances=tuple(_listed(i) for i in instances),
        inputs=tuple(inputs),
        jobs=(),
        patient_id=patient,
    )


def _listed(instance: _Named) -> GroupInstance:
    if isinstance(instance, GroupInstance):
        return instance
    if isinstance(instance, InstanceReceived):
        return GroupInstance.of(instance)
    return GroupInstance(
        sop_instance_uid=instance.sop_instance_uid,
        study_instance_uid=str(getattr(instance, "study_instance_uid", "")),
        series_instance_uid=str(getattr(instance, "series_instance_uid", "")),
        uri=instance.uri,
    )
