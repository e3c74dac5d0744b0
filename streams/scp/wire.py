"""The few DICOM wire formats the fast C-STORE path reads and writes (pure functions).

* P-DATA-TF PDV items (PS3.8 §9.3.5.1) and their message control header (PS3.8 Annex E.2),
* a DIMSE command set: group 0000, always Implicit VR Little Endian (PS3.7 §6.3.1),
* the C-STORE-RSP command (PS3.7 §9.3.1.2), encoded byte for byte as pynetdicom does.

Everything works on ``memoryview``s so a 128 KiB PDV is never copied just to be looked
at. Malformed input raises :class:`WireError`; callers hand such data back to
pynetdicom, whose state machine answers it as the standard says.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

#: P-DATA-TF PDU type (PS3.8 Table 9-22).
P_DATA_TF = 0x04
#: CommandField values (PS3.7 Annex E).
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
#: CommandDataSetType when no data set follows (PS3.7 Table E.1-1).
NO_DATA_SET = 0x0101

_PDU_HEADER = struct.Struct(">BxL")
_PDV_HEADER = struct.Struct(">LBB")
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")


class WireError(ValueError):
    """Bytes that are not the structure they should be."""


@dataclass(frozen=True, slots=True)
class Pdv:
    """One presentation data value: context, control bits and the fragment itself."""

    context_id: int
    is_command: bool
    is_last: bool
    fragment: memoryview


def pdu_header(header: bytes | bytearray) -> tuple[int, int]:
    """``(pdu_type, length)`` of a 6-byte PDU header."""
    if len(header) != 6:
        raise WireError(f"a PDU header is 6 bytes, got {len(header)}")
    pdu_type, length = _PDU_HEADER.unpack(header)
    return pdu_type, length


def iter_pdvs(body: memoryview) -> Iterator[Pdv]:
    """The PDV items of a P-DATA-TF PDU body (what follows its 6-byte header)."""
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < 6:
            raise WireError("truncated PDV item header")
        length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
        if length < 2 or offset + 4 + length > end:
            raise WireError(f"PDV item length {length} does not fit the PDU")
        yield Pdv(
            context_id=context_id,
            is_command=bool(control & 0x01),
            is_last=bool(control & 0x02),
            fragment=body[offset + 6 : offset + 4 + length],
        )
        offset += 4 + length


def parse_command(encoded: bytes | bytearray | memoryview) -> dict[int, bytes]:
    """Elements of a command set, ``{element number: raw value}`` (group 0000 only)."""
    view = memoryview(encoded)
    values: dict[int, bytes] = {}
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 8:
            raise WireError("truncated command element header")
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            raise WireError(f"bad command element ({group:04X},{element:04X}) length {length}")
        values[element] = bytes(view[offset : offset + length])
        offset += length
    return values


def command_us(values: dict[int, bytes], element: int) -> int | None:
    """An unsigned-short command value, or ``None`` when absent or not 2 bytes."""
    raw = values.get(element)
    if raw is None or len(raw) != 2:
        return None
    return int(_US.unpack(raw)[0])


def command_uid(values: dict[int, bytes], element: int) -> str:
    """A UI command value as text, trailing NULs/spaces removed (as pydicom reads it)."""
    return values.get(element, b"").rstrip(b"\x00 ").decode("latin-1")


def _ui(element: int, uid: str) -> bytes:
    raw = uid.encode("latin-1", "replace")
    if len(raw) % 2:
        raw += b"\x00"
    return _ELEMENT.pack(0, element, len(raw)) + raw


def _us(element: int, value: int) -> bytes:
    return _ELEMENT.pack(0, element, 2) + _US.pack(value)


def c_store_rsp(
    *, sop_class_uid: str, sop_instance_uid: str, message_id: int, status: int
) -> bytes:
    """The encoded C-STORE-RSP command set (group length first, elements in tag order)."""
    body = b"".join(
        (
            _ui(0x0002, sop_class_uid),
            _us(0x0100, C_STORE_RSP),
            _us(0x0120, message_id),
            _us(0x0800, NO_DATA_SET),
            _us(0x0900, status),
            _ui(0x1000, sop_instance_uid),
        )
    )
    return _ELEMENT.pack(0, 0x0000, 4) + struct.pack("<L", len(body)) + body


def command_pdu(context_id: int, command: bytes) -> bytes:
    """One P-DATA-TF PDU carrying ``command`` as a single, last command fragment."""
    item = _PDV_HEADER.pack(len(command) + 2, context_id, 0x03) + command
    return _PDU_HEADER.pack(P_DATA_TF, len(item)) + item
