"""STOW-RS pieces that need no server: Part 10 headers read back, the PS3.18 answer, and
the receiver's request-level refusals and part handling with a recording store path."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers.dicom import make_ct

from streams.dicomweb import StowError, StowReceiver
from streams.dicomweb.response import PartResult, store_instances_response
from streams.scp.gate import AssociationInfo
from streams.storage.part10 import part10_header, read_part10

EXPLICIT = "1.2.840.10008.1.2.1"


def encoded(enforce: bool = True) -> bytes:
    out = io.BytesIO()
    make_ct(sop_uid="1.2.3.4").save_as(out, enforce_file_format=enforce)
    return out.getvalue()


def test_read_part10_is_the_inverse_of_the_header_we_write() -> None:
    header = part10_header(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.3.4",
        transfer_syntax_uid=EXPLICIT,
        implementation_class_uid="1.2.3",
        source_ae_title="DICOMWEB",
    )
    found = read_part10(header + b"\x08\x00\x05\x00CS\x02\x00IR")
    assert found is not None
    assert (found.sop_instance_uid, found.transfer_syntax_uid) == ("1.2.3.4", EXPLICIT)
    assert found.data_set_offset == len(header)


@pytest.mark.parametrize("enforce", [True, False], ids=["part10", "no-preamble"])
def test_read_part10_reads_pydicom_files_with_and_without_preamble(enforce: bool) -> None:
    data = encoded(enforce)
    found = read_part10(data)
    assert found is not None and found.sop_instance_uid == "1.2.3.4"
    assert data[found.data_set_offset : found.data_set_offset + 2] == b"\x08\x00"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"\x00" * 128 + b"DICM",
        encoded()[:140],
        b"\x00" * 128 + b"DICM" + b"\x08\x00",
    ],
    ids=["empty", "text", "no-meta", "truncated", "meta-missing"],
)
def test_read_part10_refuses_what_is_not_a_part10_file(data: bytes) -> None:
    assert read_part10(data) is None


def test_answer_statuses_follow_ps3_18_table_10_5_3_1() -> None:
    ok, bad = PartResult("1.2", "1.2.3", 0x0000), PartResult("", "", 0xC000)
    assert store_instances_response([ok, ok])[0] == 200
    assert store_instances_response([ok, bad])[0] == 202
    status, body = store_instances_response([bad, PartResult("1.2", "9.9", 0xA700)])
    assert status == 409 and "00081199" not in body
    failed = body["00081198"]["Value"]
    assert failed[0] == {
        "00081150": {"vr": "UI"},
        "00081155": {"vr": "UI"},
        "00081197": {"vr": "US", "Value": [0xC000]},
    }
    assert failed[1]["00081155"] == {"vr": "UI", "Value": ["9.9"]}


class Recorder:
    """A store path that records its calls and answers ``status``."""

    def __init__(self, status: int = 0x0000) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def __call__(self, origin: AssociationInfo, **kwargs: Any) -> int:
        self.calls.append({"origin": origin, **kwargs, "data": bytes(kwargs["data"])})
        return self.status


async def chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def body_of(*parts: bytes, boundary: str = "xyz") -> bytes:
    out = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    return out + f"--{boundary}--\r\n".encode()


KIND = 'multipart/related; type="application/dicom"; boundary=xyz'


def test_parts_are_stored_in_order_read_in_small_chunks() -> None:
    store = Recorder()
    receiver = StowReceiver(store, ["AE"])
    try:
        data = encoded()
        status, body = asyncio.run(
            receiver.receive("AE", "1.2", KIND, chunks(body_of(data, data)), "10.0.0.9")
        )
    finally:
        receiver.close()
    assert status == 200 and len(body["00081199"]["Value"]) == 2
    call = store.calls[0]
    assert (call["origin"].called_ae, call["origin"].calling_ae, call["origin"].calling_host) == (
        "AE",
        "DICOMWEB",
        "10.0.0.9",
    )
    assert call["study_instance_uid"] == "1.2" and call["sop_instance_uid"] == "1.2.3.4"
    assert call["data"] == data[read_part10(data).data_set_offset :]  # type: ignore[union-attr]
    assert len({c["origin"].association_id for c in store.calls}) == 1


@pytest.mark.parametrize(
    ("ae", "kind", "body", "status", "says"),
    [
        ("NOPE", KIND, body_of(), 404, "no AE title"),
        ("AE", "application/dicom", b"", 415, "multipart/related"),
        (
            "AE",
            'multipart/related; type="application/dicom+xml"; boundary=xyz',
            b"",
            415,
            "application/dicom",
        ),
        ("AE", 'multipart/related; type="application/dicom"', b"", 400, "boundary"),
        ("AE", KIND, body_of(encoded())[:-12], 400, "closing boundary"),
        ("AE", KIND, b"--xyz--\r\n", 400, "no parts"),
    ],
    ids=["unknown-ae", "not-multipart", "xml", "no-boundary", "truncated", "empty"],
)
def test_requests_refused_as_a_whole_store_nothing(
    ae: str, kind: str, body: bytes, status: int, says: str
) -> None:
    store = Recorder()
    receiver = StowReceiver(store, ["AE"])
    try:
        with pytest.raises(StowError) as caught:
            asyncio.run(receiver.receive(ae, None, kind, chunks(body), "h"))
    finally:
        receiver.close()
    assert caught.value.status == status and says in str(caught.value)
    assert store.calls == []
