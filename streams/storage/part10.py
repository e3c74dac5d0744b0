"""DICOM Part 10 file header built from a C-STORE request, without pydicom datasets.

The received data set is written as sent (no decode, no re-encode); only the
128-byte preamble, ``DICM`` and the File Meta Information group (PS3.10 §7.1,
always Explicit VR Little Endian) are composed here.
"""

from __future__ import annotations

import struct

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


def file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
    source_ae_title: str = "",
) -> bytes:
    """Encoded File Meta Information group, group length included (PS3.10 Table 7.1-1).

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
    return _element(0x0000, b"UL", struct.pack("<I", len(joined))) + joined


def part10_header(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` prefix and :func:`file_meta` — everything before the data set."""
    return PREAMBLE + file_meta(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        implementation_class_uid=implementation_class_uid,
        implementation_version_name=implementation_version_name,
        source_ae_title=source_ae_title,
    )
