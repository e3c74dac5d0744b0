"""Typed, frozen event records: the public event contract (DESIGN.md §3.3).

Each record is the ``data`` of one envelope; :mod:`streams.events.serde` is the only
module that knows the wire format. Records carry a reference to a file (``uri``),
never pixel data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Priority = Literal["lower", "normal", "higher", "immediate"]
PRIORITIES: tuple[Priority, ...] = ("lower", "normal", "higher", "immediate")

INSTANCE_RECEIVED = "instance.received"
GROUP_CLOSED = "group.closed"
JOB_SUBMITTED = "job.submitted"
JOB_FAILED = "job.failed"
INSTANCES_REMOVED = "instances.removed"
JOB_RETRY_REQUESTED = "job.retry_requested"


@dataclass(frozen=True, slots=True)
class InstanceReceived:
    """One DICOM instance stored by an SCP (topic ``<prefix>.instances``).

    ``received_at`` is event time in epoch milliseconds, stamped once at the SCP;
    windows are computed from it, never from the consumer's clock.
    """

    called_ae: str
    calling_ae: str
    calling_host: str
    association_id: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    received_at: int
    uri: str
    size: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupInstance:
    """An instance as listed in a closed group (enough to stage and reclaim it)."""

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    uri: str


@dataclass(frozen=True, slots=True)
class InputOffset:
    """Position of one input event on the instances topic."""

    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One pipeline job a closed group yields (one per ``pipeline-*`` setting)."""

    job_id: str
    name: str
    pipeline_name: str
    pipeline_id: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class GroupClosed:
    """A window closed: the ledger record written before its inputs are committed."""

    processor: str
    ae_title: str
    group_by: str
    group_key: str
    reason: str
    first_received_at: int
    last_received_at: int
    instances: tuple[GroupInstance, ...]
    inputs: tuple[InputOffset, ...]
    jobs: tuple[JobSpec, ...]
    patient_id: str = ""


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    """A job was handed to the pipeline platform (for ``kafka`` this *is* the hand-off)."""

    job_id: str
    name: str
    ae_title: str
    pipeline_name: str
    pipeline_id: str
    priority: Priority
    payload_uri: str
    instances: tuple[GroupInstance, ...]
    attempt: int
    platform_job_id: str = ""
    group_key: str = ""


@dataclass(frozen=True, slots=True)
class JobFailed:
    """One failed submission attempt; ``will_retry=False`` means dead-lettered."""

    job_id: str
    attempt: int
    error: str
    will_retry: bool
    retry_at: int = 0  # epoch ms of the next attempt when ``will_retry``; 0 otherwise


@dataclass(frozen=True, slots=True)
class JobRetryRequested:
    """An operator asked to re-submit a dead-lettered job (``dicom-adapter jobs retry``).

    Written on the jobs topic with the job's key, so the submitter that owns the job's
    partition picks it up; it gives the job one more round of ``max_attempts`` attempts.
    """

    job_id: str
    requested_by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class InstancesRemoved:
    """Instance files deleted by the reclaimer."""

    sop_instance_uids: tuple[str, ...]
    uris: tuple[str, ...] = ()
    reason: str = "submitted"
    ae_title: str = ""
    job_ids: tuple[str, ...] = ()
    bytes_freed: int = 0
    group_event_id: str = ""  # envelope id of the group.closed whose files these were


EventData = (
    InstanceReceived | GroupClosed | JobSubmitted | JobFailed | InstancesRemoved | JobRetryRequested
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The versioned wrapper every event travels in."""

    type: str
    version: int
    id: str
    time: int
    source: str
    data: EventData
