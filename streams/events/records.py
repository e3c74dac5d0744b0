"""Typed, frozen event records: the public event contract (DESIGN.md §3.3).

Each record is the ``data`` of one envelope; :mod:`streams.events.serde` is the only
module that knows the wire format. Records carry a reference to a file (``uri``),
never pixel data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from streams.events.control import ClockTick, GroupCloseRequested, SourceHeartbeat
from streams.events.opengroups import GroupsOpen

Priority = Literal["lower", "normal", "higher", "immediate"]
PRIORITIES: tuple[Priority, ...] = ("lower", "normal", "higher", "immediate")

INSTANCE_RECEIVED = "instance.received"
GROUP_CLOSED = "group.closed"
GROUP_UPDATED = "group.updated"
JOB_SUBMITTED = "job.submitted"
JOB_FAILED = "job.failed"
INSTANCES_REMOVED = "instances.removed"
JOB_RETRY_REQUESTED = "job.retry_requested"
EXPORT_REQUESTED = "export.requested"
EXPORT_PROGRESS = "export.progress"
EXPORT_COMPLETED = "export.completed"
EXPORT_FAILED = "export.failed"
EXPORT_RETRY_REQUESTED = "export.retry_requested"

#: What became of one instance in an export attempt: ``sent`` (the peer holds it),
#: ``refused`` (the peer answered a failure status, in ``code``), ``failed`` (no status
#: for it: not readable, no connection, association dropped, ...).
ExportStatus = Literal["sent", "refused", "failed"]
EXPORT_STATUSES: tuple[ExportStatus, ...] = ("sent", "refused", "failed")


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
    #: RFC 4514 subject of the sender's verified TLS client certificate (DICOM TLS with
    #: client certificates, PS3.15 Annex B); "" over plain DICOM or without one.
    peer_certificate_subject: str = ""


@dataclass(frozen=True, slots=True)
class GroupInstance:
    """An instance as listed in a closed group (enough to stage and reclaim it)."""

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    uri: str

    @classmethod
    def of(cls, instance: InstanceReceived) -> GroupInstance:
        """The part of a received instance a closed group keeps."""
        # Positional: called once per instance a processor reads, and keywords cost ~25 %.
        return cls(
            instance.sop_instance_uid,
            instance.study_instance_uid,
            instance.series_instance_uid,
            instance.uri,
        )


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
    input_topic: str = ""  # the inputs' topic when not the instances topic (rekeyed)
    # Epoch ms (bus time) until which a late instance may still amend this group
    # (lateArrivals: amend): the reclaimer keeps its files until then. 0: no hold.
    files_kept_until: int = 0


@dataclass(frozen=True, slots=True)
class Supersedes:
    """The version a ``group.updated`` replaces: its group id, version and job ids."""

    group_id: str
    version: int
    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupUpdated(GroupClosed):
    """Version ``version`` (>= 2) of a closed group amended by late instances (issue 16).

    A ``group.closed`` in every respect (every consumer of the ledger treats it as one:
    its ``jobs`` are submitted, its files reclaimed) that lists ALL instances of the
    group, names the ``added`` ones (SOP Instance UIDs) and the version it
    ``supersedes``; ``inputs`` are only the added instances' positions (what this
    record consumed).
    """

    version: int = 2
    supersedes: Supersedes | None = None
    added: tuple[str, ...] = ()


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


# -- exports (topic ``<prefix>.exports``, keyed by ``request_id``) ----------------------
#
# Every event of one request has the request id as its Kafka key, so one exporter owns a
# request and reads its events in order. Events carry file references (``uri``) and SOP
# Instance UIDs, never pixel data; free-text fields (``error``, ``reason``) never hold
# patient names or IDs: errors are built from statuses, reasons and UIDs only.


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A file to export; its SOP identity is optional (the exporter reads it from the file)."""

    uri: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""


@dataclass(frozen=True, slots=True)
class ExportRequested:
    """Send ``files`` to each named destination (``export.destinations[].name``).

    ``request_id`` is the idempotency key: a repeated request with the same id is the
    same export. ``job_id`` names the pipeline job whose results these are, if any.
    """

    request_id: str
    destinations: tuple[str, ...]
    files: tuple[ExportFile, ...]
    job_id: str = ""
    requested_by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ExportInstance:
    """One instance's outcome in an attempt; ``code`` is the peer's status for it
    (C-STORE-RSP Status or STOW-RS FailureReason/WarningReason), ``None`` if none came.
    ``retriable`` says whether a later attempt sends it again."""

    sop_instance_uid: str
    uri: str
    status: ExportStatus
    code: int | None = None
    error: str = ""
    retriable: bool = False


@dataclass(frozen=True, slots=True)
class ExportProgress:
    """A batch of an attempt is done and more batches of the same attempt follow.

    Written after each batch (one association or one STOW-RS request) except the last,
    so that after a crash only the batch in flight is sent again, not the whole attempt.
    """

    request_id: str
    destination: str
    attempt: int
    instances: tuple[ExportInstance, ...]


@dataclass(frozen=True, slots=True)
class ExportCompleted:
    """Every file of the request is at the destination; ``instances`` are those this
    attempt's last batch delivered (earlier ones are in earlier events)."""

    request_id: str
    destination: str
    attempt: int
    instances: tuple[ExportInstance, ...]


@dataclass(frozen=True, slots=True)
class ExportFailed:
    """An attempt left instances undelivered; ``will_retry=False`` means dead-lettered
    (files kept; ``dicom-adapter export retry``). ``instances`` are the last batch's
    outcomes plus every instance of the attempt that was not delivered."""

    request_id: str
    destination: str
    attempt: int
    error: str
    will_retry: bool
    retry_at: int = 0  # epoch ms of the next attempt when ``will_retry``; 0 otherwise
    instances: tuple[ExportInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportRetryRequested:
    """An operator asked to retry a dead-lettered export (``dicom-adapter export retry``);
    ``destination`` empty means every dead-lettered destination of the request. It gives
    one more round of ``export.max_attempts`` attempts, re-sending only what was not
    delivered (instances refused earlier included)."""

    request_id: str
    destination: str = ""
    requested_by: str = ""
    reason: str = ""


EventData = (
    InstanceReceived
    | GroupClosed
    | JobSubmitted
    | JobFailed
    | InstancesRemoved
    | JobRetryRequested
    | ExportRequested
    | ExportProgress
    | ExportCompleted
    | ExportFailed
    | ExportRetryRequested
    | SourceHeartbeat
    | ClockTick
    | GroupCloseRequested
    | GroupsOpen
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


#: What :mod:`streams.events` re-exports (the records every reader and writer uses).
__all__ = [
    "EXPORT_STATUSES",
    "GROUP_CLOSED",
    "GROUP_UPDATED",
    "PRIORITIES",
    "Envelope",
    "EventData",
    "ExportCompleted",
    "ExportFailed",
    "ExportFile",
    "ExportInstance",
    "ExportProgress",
    "ExportRequested",
    "ExportRetryRequested",
    "ExportStatus",
    "GroupClosed",
    "GroupInstance",
    "GroupUpdated",
    "InputOffset",
    "InstanceReceived",
    "InstancesRemoved",
    "JobFailed",
    "JobRetryRequested",
    "JobSpec",
    "JobSubmitted",
    "Priority",
    "Supersedes",
]
