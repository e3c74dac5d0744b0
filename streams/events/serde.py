"""The one module that knows the wire format of events (orjson, versioned envelope).

Wire form (DESIGN.md §3.3)::

    {"type": "instance.received", "version": 1, "id": "<uuid>", "time": <epoch ms>,
     "source": "<adapter_id>", "data": {...}}

Readers accept any ``version`` up to :data:`SCHEMA_VERSION` and ignore unknown fields in
``data`` (forward compatible); a newer major version is refused with a clear error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson

from streams.events.control import (
    CLOCK_TICK,
    GROUP_CLOSE_REQUESTED,
    SOURCE_HEARTBEAT,
    ClockTick,
    GroupCloseRequested,
    SourceHeartbeat,
    clock_tick,
    group_close_requested,
    source_heartbeat,
)
from streams.events.export_decoders import (
    export_completed,
    export_failed,
    export_progress,
    export_requested,
    export_retry_requested,
)
from streams.events.opengroups import GROUPS_OPEN, GroupsOpen, groups_open
from streams.events.records import (
    EXPORT_COMPLETED,
    EXPORT_FAILED,
    EXPORT_PROGRESS,
    EXPORT_REQUESTED,
    EXPORT_RETRY_REQUESTED,
    GROUP_CLOSED,
    GROUP_UPDATED,
    INSTANCE_RECEIVED,
    INSTANCES_REMOVED,
    JOB_FAILED,
    JOB_RETRY_REQUESTED,
    JOB_SUBMITTED,
    Envelope,
    EventData,
    ExportCompleted,
    ExportFailed,
    ExportProgress,
    ExportRequested,
    ExportRetryRequested,
    GroupClosed,
    GroupInstance,
    GroupUpdated,
    InputOffset,
    InstanceReceived,
    InstancesRemoved,
    JobFailed,
    JobRetryRequested,
    JobSpec,
    JobSubmitted,
    Supersedes,
)

SCHEMA_VERSION = 1


class _InstanceEnvelope(msgspec.Struct):
    """The strict wire form of an ``instance.received`` envelope (:func:`decode`'s fast
    path)."""

    type: Literal["instance.received"]
    version: Annotated[int, msgspec.Meta(ge=1, le=SCHEMA_VERSION)]
    id: str
    time: int
    source: str
    data: InstanceReceived


_decode_instance_envelope = msgspec.json.Decoder(_InstanceEnvelope).decode


class EventDecodeError(ValueError):
    """A record on a topic is not a valid event envelope (not retriable)."""


def _instance(d: Mapping[str, Any]) -> GroupInstance:
    return GroupInstance(
        sop_instance_uid=d["sop_instance_uid"],
        study_instance_uid=d["study_instance_uid"],
        series_instance_uid=d["series_instance_uid"],
        uri=d["uri"],
    )


#: The required fields of ``instance.received`` data, in the record's field order.
_INSTANCE_REQUIRED = itemgetter(
    "called_ae",
    "calling_ae",
    "calling_host",
    "association_id",
    "sop_class_uid",
    "sop_instance_uid",
    "transfer_syntax_uid",
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "received_at",
    "uri",
    "size",
)

_new_instance_received: Callable[..., InstanceReceived] = InstanceReceived


def _instance_received(d: Mapping[str, Any]) -> InstanceReceived:
    # Positional, fields taken with one itemgetter: the hottest decoder (one call per
    # instance a processor reads), ~25 % cheaper than thirteen keyword lookups.
    return _new_instance_received(
        *_INSTANCE_REQUIRED(d),
        d.get("tags") or {},
        d.get("peer_certificate_subject", ""),
    )


def _group_closed(d: Mapping[str, Any]) -> GroupClosed:
    return GroupClosed(
        processor=d["processor"],
        ae_title=d["ae_title"],
        group_by=d["group_by"],
        group_key=d["group_key"],
        reason=d["reason"],
        first_received_at=d["first_received_at"],
        last_received_at=d["last_received_at"],
        instances=tuple(_instance(i) for i in d["instances"]),
        inputs=tuple(
            InputOffset(partition=i["partition"], offset=i["offset"]) for i in d["inputs"]
        ),
        jobs=tuple(
            JobSpec(
                job_id=j["job_id"],
                name=j["name"],
                pipeline_name=j["pipeline_name"],
                pipeline_id=j["pipeline_id"],
                priority=j["priority"],
            )
            for j in d["jobs"]
        ),
        patient_id=d.get("patient_id", ""),
        input_topic=d.get("input_topic", ""),
        files_kept_until=d.get("files_kept_until", 0),
    )


def _group_updated(d: Mapping[str, Any]) -> GroupUpdated:
    closed = _group_closed(d)
    sup = d.get("supersedes")
    return GroupUpdated(
        **{f: getattr(closed, f) for f in GroupClosed.__slots__},
        version=d["version"],
        supersedes=Supersedes(sup["group_id"], sup["version"], tuple(sup["job_ids"]))
        if sup
        else None,
        added=tuple(d.get("added") or ()),
    )


def _job_submitted(d: Mapping[str, Any]) -> JobSubmitted:
    return JobSubmitted(
        job_id=d["job_id"],
        name=d["name"],
        ae_title=d["ae_title"],
        pipeline_name=d["pipeline_name"],
        pipeline_id=d["pipeline_id"],
        priority=d["priority"],
        payload_uri=d["payload_uri"],
        instances=tuple(_instance(i) for i in d["instances"]),
        attempt=d["attempt"],
        platform_job_id=d.get("platform_job_id", ""),
        group_key=d.get("group_key", ""),
    )


def _job_failed(d: Mapping[str, Any]) -> JobFailed:
    return JobFailed(
        job_id=d["job_id"],
        attempt=d["attempt"],
        error=d["error"],
        will_retry=d["will_retry"],
        retry_at=d.get("retry_at", 0),
    )


def _job_retry_requested(d: Mapping[str, Any]) -> JobRetryRequested:
    return JobRetryRequested(
        job_id=d["job_id"],
        requested_by=d.get("requested_by", ""),
        reason=d.get("reason", ""),
    )


def _instances_removed(d: Mapping[str, Any]) -> InstancesRemoved:
    return InstancesRemoved(
        sop_instance_uids=tuple(d["sop_instance_uids"]),
        uris=tuple(d.get("uris", ())),
        reason=d.get("reason", "submitted"),
        ae_title=d.get("ae_title", ""),
        job_ids=tuple(d.get("job_ids", ())),
        bytes_freed=d.get("bytes_freed", 0),
        group_event_id=d.get("group_event_id", ""),
    )


_DECODERS: dict[str, Callable[[Mapping[str, Any]], EventData]] = {
    INSTANCE_RECEIVED: _instance_received,
    GROUP_CLOSED: _group_closed,
    GROUP_UPDATED: _group_updated,
    JOB_SUBMITTED: _job_submitted,
    JOB_FAILED: _job_failed,
    INSTANCES_REMOVED: _instances_removed,
    JOB_RETRY_REQUESTED: _job_retry_requested,
    EXPORT_REQUESTED: export_requested,
    EXPORT_PROGRESS: export_progress,
    EXPORT_COMPLETED: export_completed,
    EXPORT_FAILED: export_failed,
    EXPORT_RETRY_REQUESTED: export_retry_requested,
    SOURCE_HEARTBEAT: source_heartbeat,
    CLOCK_TICK: clock_tick,
    GROUP_CLOSE_REQUESTED: group_close_requested,
    GROUPS_OPEN: groups_open,
}

_TYPES: dict[type[Any], str] = {
    InstanceReceived: INSTANCE_RECEIVED,
    GroupClosed: GROUP_CLOSED,
    GroupUpdated: GROUP_UPDATED,
    JobSubmitted: JOB_SUBMITTED,
    JobFailed: JOB_FAILED,
    InstancesRemoved: INSTANCES_REMOVED,
    JobRetryRequested: JOB_RETRY_REQUESTED,
    ExportRequested: EXPORT_REQUESTED,
    ExportProgress: EXPORT_PROGRESS,
    ExportCompleted: EXPORT_COMPLETED,
    ExportFailed: EXPORT_FAILED,
    ExportRetryRequested: EXPORT_RETRY_REQUESTED,
    SourceHeartbeat: SOURCE_HEARTBEAT,
    ClockTick: CLOCK_TICK,
    GroupCloseRequested: GROUP_CLOSE_REQUESTED,
    GroupsOpen: GROUPS_OPEN,
}

EVENT_TYPES: tuple[str, ...] = tuple(_DECODERS)


def event_type(data: EventData) -> str:
    """The wire ``type`` of a record."""
    return _TYPES[type(data)]


def envelope(
    data: EventData, *, source: str, time_ms: int, event_id: str | None = None
) -> Envelope:
    """Wrap ``data`` in an envelope; ``event_id`` defaults to a fresh uuid4."""
    return Envelope(
        type=event_type(data),
        version=SCHEMA_VERSION,
        id=event_id or str(uuid.uuid4()),
        time=time_ms,
        source=source,
        data=data,
    )


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    # subclasses of the JSON scalars (pydicom's UID is a str) are written as their base
    for base in (str, int, float):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_encode = msgspec.json.Encoder(enc_hook=_default).encode


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to JSON bytes."""
    # msgspec serialises the (slotted, frozen) records natively, fields in definition
    # order, tuples as arrays: the bytes ``dataclasses.asdict`` + orjson gave, ~2.5x
    # faster than orjson's dataclass path for a ``group.closed`` (17 -> 7 us at ten
    # instances; docs/benchmarks.md). Non-dict mappings go through ``_default``.
    return _encode(
        {
            "type": env.type,
            "version": env.version,
            "id": env.id,
            "time": env.time,
            "source": env.source,
            "data": env.data,
        }
    )


def to_dict(env: Envelope) -> dict[str, Any]:
    """The envelope as plain JSON-compatible values (for printing and schemas)."""
    result: dict[str, Any] = orjson.loads(encode(env))
    return result


def decode(raw: bytes | str) -> Envelope:
    """Parse JSON bytes into an envelope with a typed record.

    Raises :class:`EventDecodeError` naming what is wrong; never returns half an event.

    Nearly every record a processor reads is an ``instance.received``: msgspec parses its
    strict form (the event type, a supported version, every field with its schema type,
    ``tags`` an object of strings) straight into the records in C, ~3.8 µs instead of ~7
    (docs/benchmarks.md, "Windows"). Anything else -- another type, an older writer's
    ``null`` tags, a field of another type -- takes the general path below: the same
    envelope or the same error as without the fast path (tests/unit/test_fastdecode.py).
    """
    try:
        e = _decode_instance_envelope(raw)
    except msgspec.DecodeError:  # also msgspec.ValidationError: the general path decides
        pass
    else:
        return Envelope(INSTANCE_RECEIVED, e.version, e.id, e.time, e.source, e.data)
    return _decode_general(raw)


def _decode_general(raw: bytes | str) -> Envelope:
    """:func:`decode` without its fast path: every event type and form."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"event is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EventDecodeError("event is not a JSON object")
    try:
        kind = obj["type"]
        version = obj["version"]
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise EventDecodeError(f"unknown event type {kind!r} (known: {', '.join(EVENT_TYPES)})")
        if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
            raise EventDecodeError(
                f"event version {version!r} of {kind!r} is not supported "
                f"(this build reads 1..{SCHEMA_VERSION}); upgrade dicom-adapter"
            )
        return Envelope(
            type=kind,
            version=version,
            id=obj["id"],
            time=obj["time"],
            source=obj["source"],
            data=decoder(obj["data"]),
        )
    except (KeyError, TypeError) as exc:
        raise EventDecodeError(f"malformed event: missing or wrong field {exc}") from None


def schema_path(kind: str) -> Path:
    """Path of the JSON Schema file describing events of type ``kind``."""
    if kind not in _DECODERS:
        raise ValueError(f"unknown event type {kind!r}")
    return Path(__file__).with_name("schemas") / f"{kind}.schema.json"
