"""Export events: every record round-trips and validates against its JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.events import (
    EVENT_TYPES,
    EXPORT_STATUSES,
    ExportCompleted,
    ExportFailed,
    ExportFile,
    ExportInstance,
    ExportProgress,
    ExportRequested,
    ExportRetryRequested,
    decode,
    encode,
    envelope,
    schema_path,
    to_dict,
)

text = st.text(max_size=30)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
ids = st.text(min_size=1, max_size=30)
uids = st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,8}){0,6}", fullmatch=True)
ms = st.integers(min_value=0, max_value=2**48)
attempts = st.integers(1, 50)

files = st.builds(ExportFile, uri=st.text(min_size=1, max_size=40), sop_instance_uid=uids)
instances = st.builds(
    ExportInstance,
    sop_instance_uid=uids,
    uri=text,
    status=st.sampled_from(EXPORT_STATUSES),
    code=st.none() | st.integers(0, 0xFFFF),
    error=text,
    retriable=st.booleans(),
)
batch = st.lists(instances, max_size=4).map(tuple)
export_records = st.one_of(
    st.builds(
        ExportRequested,
        request_id=ids,
        destinations=st.lists(names, min_size=1, max_size=3).map(tuple),
        files=st.lists(files, max_size=4).map(tuple),
        job_id=text,
        requested_by=text,
        reason=text,
    ),
    st.builds(ExportProgress, ids, names, attempts, batch),
    st.builds(ExportCompleted, ids, names, attempts, batch),
    st.builds(ExportFailed, ids, names, attempts, text, st.booleans(), ms, batch),
    st.builds(ExportRetryRequested, ids, names | st.just(""), text, text),
)


def _schema(kind: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(schema_path(kind).read_text())
    return loaded


@given(export_records, text, ms)
def test_export_events_round_trip_and_match_their_schema(record, source, time_ms) -> None:
    env = envelope(record, source=source, time_ms=time_ms)
    wire = encode(env)
    assert decode(wire) == env
    jsonschema.validate(orjson.loads(wire), _schema(env.type))


def test_the_export_types_are_registered() -> None:
    assert {
        "export.requested",
        "export.progress",
        "export.completed",
        "export.failed",
        "export.retry_requested",
    } <= set(EVENT_TYPES)


def test_wire_form_of_a_failed_attempt() -> None:
    record = ExportFailed(
        request_id="r-1",
        destination="pacs",
        attempt=2,
        error="1 of 3 instances not delivered: 1 refused (0xA900)",
        will_retry=False,
        instances=(
            ExportInstance("1.2.3", "/data/a.dcm", "sent", 0),
            ExportInstance("1.2.4", "/data/b.dcm", "refused", 0xA900, "refused: 0xA900"),
            ExportInstance("1.2.5", "/data/c.dcm", "failed", None, "dropped", retriable=True),
        ),
    )
    env = envelope(record, source="adapter-1", time_ms=1, event_id="e")
    data = to_dict(env)["data"]
    assert data["instances"][1] == {
        "sop_instance_uid": "1.2.4",
        "uri": "/data/b.dcm",
        "status": "refused",
        "code": 0xA900,
        "error": "refused: 0xA900",
        "retriable": False,
    }
    assert data["instances"][2]["code"] is None
    assert (data["will_retry"], data["retry_at"]) == (False, 0)


def test_optional_fields_may_be_left_out_by_writers() -> None:
    wire = {
        "type": "export.requested",
        "version": 1,
        "id": "e",
        "time": 1,
        "source": "s",
        "data": {"request_id": "r", "destinations": ["pacs"], "files": [{"uri": "/x.dcm"}]},
    }
    jsonschema.validate(wire, _schema("export.requested"))
    record = decode(orjson.dumps(wire)).data
    assert record == ExportRequested("r", ("pacs",), (ExportFile("/x.dcm"),))


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("export.requested", {"destinations": []}),
        ("export.requested", {"files": [{"sop_instance_uid": "1.2"}]}),
        ("export.failed", {"instances": [{"sop_instance_uid": "1", "uri": "u", "status": "ok"}]}),
        ("export.completed", {"attempt": 0}),
        ("export.retry_requested", {"request_id": ""}),
    ],
)
def test_schemas_refuse_bad_data(kind: str, change: dict[str, object]) -> None:
    good = {
        "export.requested": ExportRequested("r", ("pacs",), (ExportFile("/x"),)),
        "export.failed": ExportFailed("r", "pacs", 1, "e", True, 5),
        "export.completed": ExportCompleted("r", "pacs", 1, ()),
        "export.retry_requested": ExportRetryRequested("r"),
    }[kind]
    wire = orjson.loads(encode(envelope(good, source="s", time_ms=1)))
    jsonschema.validate(wire, _schema(kind))
    wire["data"].update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wire, _schema(kind))
