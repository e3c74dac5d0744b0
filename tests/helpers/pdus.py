"""Raw DICOM upper-layer PDUs built by hand (PS3.8 §9.3), for fuzzing an SCP's port.

Only what the bad-input tests need: an A-ASSOCIATE-RQ, P-DATA-TF PDUs and PDV items,
a C-STORE-RQ command set (implicit VR little endian, PS3.7 §9.3.1.1), A-RELEASE-RQ and
a reader that splits what the SCP sends back into PDUs.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(body)) + body


def pdu(pdu_type: int, body: bytes, *, length: int | None = None) -> bytes:
    """A PDU: type, reserved byte, 4-byte length (``length`` overrides it) and body."""
    return struct.pack(">BxL", pdu_type, len(body) if length is None else length) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)[:16]


def associate_rq(
    called: str,
    calling: str = "FUZZSCU",
    contexts: tuple[tuple[int, str, tuple[str, ...]], ...] = (
        (1, VERIFICATION, (EXPLICIT_LE,)),
        (3, CT_IMAGE, (EXPLICIT_LE,)),
        (5, CT_IMAGE, (IMPLICIT_LE,)),
    ),
    max_pdu: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2) proposing ``contexts`` (id, abstract, syntaxes)."""
    body = struct.pack(">H2x", 1) + _ae(called) + _ae(calling) + bytes(32)
    body += _item(0x10, APP_CONTEXT.encode())
    for cid, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        body += _item(0x20, struct.pack(">B3x", cid) + sub)
    user = _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.9.7")
    body += _item(0x50, user)
    return pdu(A_ASSOCIATE_RQ, body)


def pdv(context_id: int, control: int, fragment: bytes, *, length: int | None = None) -> bytes:
    """One PDV item: 4-byte length (``length`` overrides it), context id, control header."""
    size = len(fragment) + 2 if length is None else length
    return struct.pack(">LBB", size, context_id, control) + fragment


def p_data(*items: bytes, length: int | None = None) -> bytes:
    """A P-DATA-TF PDU carrying the given PDV items."""
    return pdu(P_DATA_TF, b"".join(items), length=length)


def element(elem: int, value: bytes, *, length: int | None = None) -> bytes:
    """A group-0000 element in implicit VR little endian."""
    return struct.pack("<HHL", 0, elem, len(value) if length is None else length) + value


def ui(value: str) -> bytes:
    """A UI value padded to even length with NUL."""
    raw = value.encode("latin-1")
    return raw + b"\x00" if len(raw) % 2 else raw


def us(value: int) -> bytes:
    """A US value."""
    return struct.pack("<H", value)


def c_store_elements(sop_class: str, sop_uid: str, message_id: int) -> dict[int, bytes]:
    """The elements (without group length) of a C-STORE-RQ with a data set."""
    return {
        0x0002: ui(sop_class),
        0x0100: us(0x0001),
        0x0110: us(message_id),
        0x0700: us(0x0000),
        0x0800: us(0x0001),
        0x1000: ui(sop_uid),
    }


def command_set(elements: dict[int, bytes], *, group_length: int | None = None) -> bytes:
    """Encode ``elements`` in tag order behind a (0000,0000) group length."""
    body = b"".join(element(e, v) for e, v in sorted(elements.items()))
    glen = len(body) if group_length is None else group_length
    return element(0x0000, struct.pack("<L", glen)) + body


@dataclass(frozen=True)
class Received:
    """One PDU read back from the SCP."""

    pdu_type: int
    body: bytes


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_pdu(sock: socket.socket) -> Received | None:
    """The next PDU from the SCP, or ``None`` when it closed the connection."""
    header = _recv_exact(sock, 6)
    if header is None:
        return None
    pdu_type, length = struct.unpack(">BxL", header)
    body = _recv_exact(sock, length)
    if body is None:
        return None
    return Received(pdu_type, body)


def command_status(body: bytes) -> tuple[int, str] | None:
    """``(status, affected SOP instance UID)`` of a one-PDV command response PDU body."""
    offset, found = 0, None
    elements: dict[int, bytes] = {}
    while offset + 6 <= len(body):
        length, _cid, control = struct.unpack_from(">LBB", body, offset)
        frag = body[offset + 6 : offset + 4 + length]
        offset += 4 + length
        if not control & 0x01:
            continue
        pos = 0
        while pos + 8 <= len(frag):
            _g, e, n = struct.unpack_from("<HHL", frag, pos)
            elements[e] = frag[pos + 8 : pos + 8 + n]
            pos += 8 + n
    if 0x0900 in elements:
        status = struct.unpack("<H", elements[0x0900][:2])[0]
        uid = elements.get(0x1000, b"").rstrip(b"\x00 ").decode("latin-1")
        found = (int(status), uid)
    return found
