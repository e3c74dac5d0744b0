"""``decode``'s msgspec fast path gives exactly what the general decoder gives.

The fast path reads only the strict form of ``instance.received``; every other input
must fall through to the general decoder, so for any bytes ``decode`` and the general
decoder agree: the same envelope, or both raise :class:`EventDecodeError`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.events import EventDecodeError, InstanceReceived, decode, encode, envelope, serde

text = st.text(max_size=30)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# Wider than test_events' strategy on purpose: any text where UIDs go and any 64-bit
# integer for the times and sizes, to probe how strict the fast path's types are.
instances = st.builds(
    InstanceReceived,
    *[text] * 10,  # AE titles, host, association id, SOP class/instance, syntax, patient, UIDs
    ints,  # received_at
    text,  # uri
    ints,  # size
    st.dictionaries(text, text, max_size=3),  # tags
    text,  # peer_certificate_subject
)

#: Values a mutated field may take: the wrong JSON types, nulls, odd numbers.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.integers(min_value=2**64, max_value=2**70),
    st.floats(allow_nan=False),
    text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(text, st.one_of(text, st.integers(), st.none()), max_size=2),
)


def outcome(fn: Any, raw: bytes) -> Any:
    try:
        return fn(raw)
    except EventDecodeError:
        return EventDecodeError


def fast_path_taken(raw: bytes) -> bool:
    try:
        serde._decode_instance_envelope(raw)
    except Exception:
        return False
    return True


@given(instances, st.integers(min_value=1, max_value=serde.SCHEMA_VERSION))
def test_our_writers_events_take_the_fast_path_and_decode_alike(
    instance: InstanceReceived, version: int
) -> None:
    obj = orjson.loads(encode(envelope(instance, source="scp-1", time_ms=5)))
    obj["version"] = version
    raw = orjson.dumps(obj)
    assert fast_path_taken(raw)
    assert decode(raw) == serde._decode_general(raw)
    assert decode(raw).data == instance


@given(
    instances,
    st.sampled_from(["envelope", "data"]),
    st.one_of(
        st.sampled_from(["type", "version", "id", "time", "source", "data"]),
        st.sampled_from(list(InstanceReceived.__dataclass_fields__)),
        text,
    ),
    st.one_of(st.just("drop"), odd_values),
)
def test_any_mutated_event_decodes_as_the_general_decoder_does(
    instance: InstanceReceived, where: str, name: str, value: Any
) -> None:
    obj = orjson.loads(encode(envelope(instance, source="scp-1", time_ms=5)))
    target = obj if where == "envelope" else obj["data"]
    if not isinstance(target, dict):
        return
    if value == "drop":
        target.pop(name, None)
    else:
        target[name] = value
    raw = json.dumps(obj).encode()  # orjson refuses integers beyond 64 bits
    assert outcome(decode, raw) == outcome(serde._decode_general, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"type": "instance.received"}',
        b'{"type": "instance.received", "version": 2, "id": "i", "time": 1, "source": "s",'
        b' "data": {}}',
    ],
)
def test_bad_bytes_raise_the_general_decoders_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError) as fast:
        decode(raw)
    with pytest.raises(EventDecodeError) as general:
        serde._decode_general(raw)
    assert str(fast.value) == str(general.value)


def test_older_writers_null_tags_still_decode() -> None:
    instance = InstanceReceived(*(["x"] * 10), 1, "u", 2)  # type: ignore[arg-type]
    obj = orjson.loads(encode(envelope(instance, source="s", time_ms=1)))
    obj["data"]["tags"] = None
    del obj["data"]["peer_certificate_subject"]
    raw = orjson.dumps(obj)
    assert not fast_path_taken(raw)
    assert decode(raw).data == instance
    assert decode(raw).data.tags == {}
