"""Event contract: every record round-trips and validates against its JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from streams.events import (
    EVENT_TYPES,
    PRIORITIES,
    ClockTick,
    Envelope,
    EventDecodeError,
    GroupClosed,
    GroupCloseRequested,
    GroupInstance,
    GroupsOpen,
    InputOffset,
    InstanceReceived,
    InstancesRemoved,
    JobFailed,
    JobSpec,
    JobSubmitted,
    OpenGroupInfo,
    SourceHeartbeat,
    decode,
    encode,
    envelope,
    schema_path,
    to_dict,
)

text = st.text(max_size=40)
uids = st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,8}){0,6}", fullmatch=True)
ms = st.integers(min_value=0, max_value=2**48)

group_instances = st.builds(GroupInstance, uids, uids, uids, text)
instance_received = st.builds(
    InstanceReceived,
    called_ae=text,
    calling_ae=text,
    calling_host=text,
    association_id=text,
    sop_class_uid=uids,
    sop_instance_uid=uids,
    transfer_syntax_uid=uids,
    patient_id=text,
    study_instance_uid=uids,
    series_instance_uid=uids,
    received_at=ms,
    uri=text,
    size=st.integers(min_value=0, max_value=2**40),
    tags=st.dictionaries(st.from_regex(r"[0-9A-F]{8}", fullmatch=True), text, max_size=3),
)
job_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
jobs = st.builds(JobSpec, text, job_names, text, text, st.sampled_from(PRIORITIES))
group_closed = st.builds(
    GroupClosed,
    processor=text,
    ae_title=text,
    group_by=text,
    group_key=text,
    reason=st.sampled_from(["timeout", "api"]),
    first_received_at=ms,
    last_received_at=ms,
    instances=st.lists(group_instances, max_size=4).map(tuple),
    inputs=st.lists(
        st.builds(InputOffset, st.integers(0, 100), st.integers(0, 2**40)), max_size=4
    ).map(tuple),
    jobs=st.lists(jobs, max_size=3).map(tuple),
    patient_id=text,
)
job_submitted = st.builds(
    JobSubmitted,
    job_id=text,
    name=text,
    ae_title=text,
    pipeline_name=text,
    pipeline_id=text,
    priority=st.sampled_from(PRIORITIES),
    payload_uri=text,
    instances=st.lists(group_instances, max_size=3).map(tuple),
    attempt=st.integers(1, 20),
    platform_job_id=text,
    group_key=text,
)
job_failed = st.builds(JobFailed, text, st.integers(1, 20), text, st.booleans())
instances_removed = st.builds(
    InstancesRemoved,
    sop_instance_uids=st.lists(uids, max_size=4).map(tuple),
    uris=st.lists(text, max_size=4).map(tuple),
    reason=text,
    ae_title=text,
    job_ids=st.lists(text, max_size=2).map(tuple),
    bytes_freed=st.integers(0, 2**40),
)
heartbeats = st.builds(
    SourceHeartbeat,
    source=text.filter(bool),
    sent_at=ms,
    watermark=ms,
    pending=st.integers(0, 10**6),
    associations=st.integers(0, 1000),
    state=st.sampled_from(["up", "stopped", "lost"]),
    interval_ms=st.integers(1, 60_000),
)
ticks = st.builds(ClockTick, ms, text)
close_requests = st.builds(GroupCloseRequested, text.filter(bool), text.filter(bool), text, text)
open_groups = st.builds(
    GroupsOpen,
    ae_title=text.filter(bool),
    topic=text.filter(bool),
    partition=st.integers(0, 1000),
    owner=text,
    published_at=ms,
    groups=st.lists(
        st.builds(
            OpenGroupInfo,
            group_id=text.filter(bool),
            group_by=text,
            group_key=text,
            instances=st.integers(0, 10**6),
            first_received_at=ms,
            last_received_at=ms,
            deadline=ms,
            due_reason=st.sampled_from(["timeout", "max_age"]),
        ),
        max_size=3,
    ).map(tuple),
    truncated=st.integers(0, 10**6),
)
any_record = st.one_of(
    instance_received,
    group_closed,
    job_submitted,
    job_failed,
    instances_removed,
    heartbeats,
    ticks,
    close_requests,
    open_groups,
)


def _schema(kind: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(schema_path(kind).read_text())
    return loaded


@given(any_record, text, ms)
def test_every_event_round_trips_and_matches_its_schema(record, source, time_ms) -> None:
    env = envelope(record, source=source, time_ms=time_ms)
    wire = encode(env)
    assert decode(wire) == env
    jsonschema.validate(orjson.loads(wire), _schema(env.type))


def _orjson_bytes(env: Envelope) -> bytes | type[Exception]:
    """What ``encode`` wrote before it used msgspec (orjson over the records)."""
    try:
        return orjson.dumps(
            {"type": env.type, "version": env.version, "id": env.id, "time": env.time,
             "source": env.source, "data": env.data},
            default=dict,
        )  # fmt: skip
    except TypeError:
        return Exception


def _encoded(env: Envelope) -> bytes | type[Exception]:
    try:
        return encode(env)
    except Exception:
        return Exception


@given(any_record, text, ms)
def test_the_wire_bytes_are_the_ones_orjson_wrote(record, source, time_ms) -> None:
    env = envelope(record, source=source, time_ms=time_ms)
    assert _encoded(env) == _orjson_bytes(env)


def test_subclasses_of_strings_and_numbers_are_written_as_their_base() -> None:
    class Count(int):
        pass

    uid = UID("1.2.840.10008.5.1.4.1.1.2")  # what pydicom hands the SCP
    record = InstanceReceived(*[uid] * 10, Count(7), uid, Count(9), {"k": uid})  # type: ignore[arg-type]
    env = envelope(record, source="scp", time_ms=1)
    assert encode(env) == _orjson_bytes(env)
    assert decode(encode(env)).data == record


def test_there_is_one_schema_file_per_event_type() -> None:
    for kind in EVENT_TYPES:
        schema = _schema(kind)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": kind}  # type: ignore[index]


def test_wire_form_is_the_documented_envelope() -> None:
    record = JobFailed(job_id="j1", attempt=2, error="HTTP 503", will_retry=True)
    env = envelope(record, source="adapter-1", time_ms=1732800000123, event_id="e-1")
    assert to_dict(env) == {
        "type": "job.failed",
        "version": 1,
        "id": "e-1",
        "time": 1732800000123,
        "source": "adapter-1",
        "data": {
            "job_id": "j1",
            "attempt": 2,
            "error": "HTTP 503",
            "will_retry": True,
            "retry_at": 0,
        },
    }


def test_schema_rejects_a_wrong_priority() -> None:
    spec = JobSpec("j", "ae-lung-20260101000000", "lung", "p1", "normal")
    closed = GroupClosed("p", "AE", "(0020,000D)", "1.2", "timeout", 1, 2, (), (), (spec,))
    wire = orjson.loads(encode(envelope(closed, source="s", time_ms=1)))
    wire["data"]["jobs"][0]["priority"] = "SonicSpeed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wire, _schema("group.closed"))


def test_decoder_ignores_unknown_data_fields_for_forward_compatibility() -> None:
    wire = orjson.loads(encode(envelope(JobFailed("j", 1, "x", False), source="s", time_ms=1)))
    wire["data"]["added_in_a_later_minor"] = 1
    assert decode(orjson.dumps(wire)).data == JobFailed("j", 1, "x", False)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"type": "nope", "version": 1}', "unknown event type 'nope'"),
        (b'{"type": "job.failed", "version": 2}', "version 2"),
        (
            b'{"type": "job.failed", "version": 1, "id": "x", "time": 1, "source": "s",'
            b' "data": {"job_id": "j"}}',
            "missing or wrong field",
        ),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        decode(raw)
