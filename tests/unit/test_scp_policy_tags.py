"""Pure SCP parts: association policy, tag reading from encoded data sets, TCP reads."""

from __future__ import annotations

import socket
import threading
import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from streams.scp.policy import (
    CALLED_AE_NOT_RECOGNIZED,
    CALLING_AE_NOT_RECOGNIZED,
    AssociationPolicy,
)
from streams.scp.tags import TagReadError, parse_tag, read_tags, tag_key
from streams.scp.tcp import recv_exact

# -- policy -----------------------------------------------------------------------------


def test_called_ae_must_be_configured_exactly() -> None:
    policy = AssociationPolicy.build(["CT-AE", "MR"])
    assert policy.check("CT-AE", "ANY", "10.0.0.1") is None
    assert policy.check("MR", "ANY", "10.0.0.1") is None
    assert policy.check("ct-ae", "ANY", "10.0.0.1") is CALLED_AE_NOT_RECOGNIZED
    assert policy.check("BLABLA", "ANY", "10.0.0.1") is CALLED_AE_NOT_RECOGNIZED
    assert CALLED_AE_NOT_RECOGNIZED[:3] == (0x01, 0x01, 0x07)


def test_unknown_sources_rejected_only_when_required() -> None:
    sources = [("PACS1", ["127.0.0.1"]), ("PACS2", None)]
    strict = AssociationPolicy.build(["CT"], reject_unknown_sources=True, sources=sources)
    lax = AssociationPolicy.build(["CT"], reject_unknown_sources=False, sources=sources)
    assert lax.check("CT", "UNKNOWN", "10.9.9.9") is None
    assert strict.check("CT", "PACS1", "127.0.0.1") is None
    assert strict.check("CT", "PACS1", "::ffff:127.0.0.1") is None
    assert strict.check("CT", "PACS2", "10.9.9.9") is None  # no host: any host
    assert strict.check("CT", "PACS1", "10.0.0.2") is CALLING_AE_NOT_RECOGNIZED
    assert strict.check("CT", "UNKNOWN", "127.0.0.1") is CALLING_AE_NOT_RECOGNIZED
    assert strict.check("CT", "pacs1", "127.0.0.1") is CALLING_AE_NOT_RECOGNIZED
    # Clara's order: the calling AE is checked first.
    assert strict.check("NOPE", "UNKNOWN", "127.0.0.1") is CALLING_AE_NOT_RECOGNIZED
    assert strict.check("NOPE", "PACS1", "127.0.0.1") is CALLED_AE_NOT_RECOGNIZED
    assert CALLING_AE_NOT_RECOGNIZED[:3] == (0x01, 0x01, 0x03)


# -- tags ---------------------------------------------------------------------------------


def _encoded(ds: Dataset, *, implicit: bool, little: bool) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = little
    write_dataset(buf, ds)
    return buf.getvalue()


def _instance() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = "ACC-9"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "PID-ä"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = 7
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * 8
    return ds


WANTED = [0x00100020, 0x0020000D, 0x0020000E, 0x00080050, 0x00080008, 0x00200013, 0x00100030]


@pytest.mark.parametrize(
    ("ts", "implicit", "little"),
    [
        ("1.2.840.10008.1.2", True, True),
        ("1.2.840.10008.1.2.1", False, True),
        ("1.2.840.10008.1.2.2", False, False),
        ("1.2.840.10008.1.2.4.50", False, True),  # encapsulated: explicit VR LE data set
    ],
)
def test_read_tags_in_every_encoding(ts: str, implicit: bool, little: bool) -> None:
    data = _encoded(_instance(), implicit=implicit, little=little)
    got = read_tags(data, ts, WANTED)
    assert got == {
        0x00100020: "PID-ä",
        0x0020000D: "1.2.3",
        0x0020000E: "1.2.3.4",
        0x00080050: "ACC-9",
        0x00080008: "ORIGINAL\\PRIMARY",
        0x00200013: "7",
    }  # (0010,0030) is absent, so it is left out


def test_read_tags_from_deflated_data_set() -> None:
    raw = _encoded(_instance(), implicit=False, little=True)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = comp.compress(raw) + comp.flush()
    got = read_tags(deflated, "1.2.840.10008.1.2.1.99", [0x0020000D])
    assert got == {0x0020000D: "1.2.3"}


def test_read_tags_stops_before_a_broken_tail() -> None:
    # Everything after the wanted tags is garbage: never parsed.
    data = _encoded(_instance(), implicit=False, little=True)
    cut = data.index(b"\x20\x00\x13\x00")  # (0020,0013) InstanceNumber
    broken = data[:cut] + b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\x7f"
    assert read_tags(broken, "1.2.840.10008.1.2.1", [0x0020000E]) == {0x0020000E: "1.2.3.4"}


def test_read_tags_on_garbage_raises() -> None:
    with pytest.raises(TagReadError, match="cannot read tags"):
        read_tags(b"\xff" * 20, "1.2.840.10008.1.2.1.99", [0x0020000D])  # not deflate


@pytest.mark.parametrize("text", ["0010,0020", "(0010,0020)", "00100020", " 0010, 0020 "])
def test_parse_tag_and_tag_key(text: str) -> None:
    assert parse_tag(text) == 0x00100020
    assert tag_key(0x0020000D) == "0020000D"


@pytest.mark.parametrize("text", ["", "0010", "zzzzzzzz", "0010,00200"])
def test_bad_tags_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="8 hex digits"):
        parse_tag(text)


# -- TCP reads ---------------------------------------------------------------------------


def test_recv_exact_reads_everything_then_partial_on_close() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    payload = bytes(range(256)) * 1000

    def send() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(payload)

    t = threading.Thread(target=send)
    t.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        first = recv_exact(client, 100_000, quickack=True)
        rest = recv_exact(client, 1_000_000, quickack=True)
    t.join()
    server.close()
    assert bytes(first) == payload[:100_000]
    assert bytes(rest) == payload[100_000:]


def test_invalid_value_falls_back_to_its_raw_text() -> None:
    # (0020,0013) IS "1A": pydicom warns on conversion (an error under this test config).
    data = b"\x20\x00\x13\x00IS\x02\x001A"
    assert read_tags(data, "1.2.840.10008.1.2.1", [0x00200013]) == {0x00200013: "1A"}
