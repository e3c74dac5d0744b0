"""DICOM Part 10 file headers, built from a C-STORE request or read from a file, without
pydicom datasets.

The received data set is written as sent (no decode, no re-encode); only the
128-byte preamble, ``DICM`` and the File Meta Information group (PS3.10 §7.1,
always Explicit VR Little Endian) are composed here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PREAMBLE = b"\x00" * 128 + b"DICM"

# VRs with a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _pad(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def part10_header(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
    source_ae_title: str = "",
) -> bytes:
    """Everything before the data set: preamble, ``DICM`` prefix and the encoded File
    Meta Information group with its group length (PS3.10 §7.1, Table 7.1-1).

    UIDs are padded with NUL, text with a space, to even length. Empty optional values
    are left out.
    """
    body = [
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _pad(sop_class_uid, b"\x00")),
        _element(0x0003, b"UI", _pad(sop_instance_uid, b"\x00")),
        _element(0x0010, b"UI", _pad(transfer_syntax_uid, b"\x00")),
        _element(0x0012, b"UI", _pad(implementation_class_uid, b"\x00")),
    ]
    if implementation_version_name:
        body.append(_element(0x0013, b"SH", _pad(implementation_version_name[:16], b" ")))
    if source_ae_title:
        body.append(_element(0x0016, b"AE", _pad(source_ae_title[:16], b" ")))
    joined = b"".join(body)
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<I", len(joined))) + joined


@dataclass(frozen=True, slots=True)
class Part10:
    """What a Part 10 file's File Meta Information says, and where its data set starts."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data_set_offset: int


def read_part10(data: bytes | bytearray | memoryview) -> Part10 | None:
    """Take a Part 10 file apart without pydicom (the inverse of :func:`part10_header`):
    ``None`` unless it has a File Meta Information group that names the SOP Class, SOP
    Instance and Transfer Syntax UIDs, after the preamble and ``DICM`` (PS3.10 §7.1) or,
    leniently, without them. The group is read element by element (always Explicit VR
    Little Endian) until the first element of another group."""
    view = memoryview(data)
    if len(view) >= 132 and bytes(view[128:132]) == b"DICM":
        pos = 132
    elif bytes(view[:2]) == b"\x02\x00":
        # No preamble: pydicom's dcmwrite without enforce_file_format (what
        # dicomweb-client sends for data sets built in memory) starts at the meta group.
        pos = 0
    else:
        return None
    values: dict[int, str] = {}
    while pos + 8 <= len(view):
        group, element = struct.unpack_from("<HH", view, pos)
        if group != 0x0002:
            break
        vr = bytes(view[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            if pos + 12 > len(view):
                return None
            (length,) = struct.unpack_from("<I", view, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", view, pos + 6)
            start = pos + 8
        if start + length > len(view):
            return None
        if element in (0x0002, 0x0003, 0x0010):
            values[element] = bytes(view[start : start + length]).decode("ascii", "replace")
        pos = start + length
    found = [values.get(e, "").rstrip("\x00 ") for e in (0x0002, 0x0003, 0x0010)]
    if not all(found):
        return None
    return Part10(found[0], found[1], found[2], pos)
