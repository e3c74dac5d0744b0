"""Find a few top-level elements of a little-endian data set by their headers (pure).

pydicom's ``read_dataset`` turns every element header it passes into Python objects:
~170 µs to reach the Patient ID and the Study and Series UIDs of a 9 kB CT, about an
eighth of the GIL time the SCP spends per C-STORE (docs/benchmarks.md, "Issue 19,
round 5"). :func:`scan` walks the headers with ``struct`` instead and returns only the
wanted elements' raw bytes. :func:`plain_text` decodes the common values itself -- UIDs,
IDs and codes of printable ASCII, which every DICOM character set and every pydicom
conversion (strip trailing NULs and spaces) turn into the same text -- and leaves the
rest to pydicom. Where the walk could differ from pydicom's -- big endian, a first
VR that contradicts the transfer syntax (pydicom switches), an unknown VR, an ``UN`` of
undefined length, a wanted sequence, a truncated header or value -- it returns ``None``
and the caller lets pydicom read the data set as before.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection

from pydicom.datadict import dictionary_VR

#: VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 §7.1.2).
_LONG = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

#: VRs whose printable-ASCII values :func:`plain_text` decodes as pydicom would.
_PLAIN_VRS = frozenset({"UI", "LO", "SH", "CS"})
#: Printable ASCII but the backslash (the value separator): one value, the same text in
#: every character set pydicom supports (ISO 2022 needs ESC to leave ASCII).
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")

#: tag -> (VR or ``None`` for implicit VR, value length, value bytes, value offset)
Found = dict[int, tuple[str | None, int, bytes, int]]

Buffer = bytes | bytearray | memoryview


def scan(data: Buffer, implicit: bool, wanted: Collection[int], last: int) -> Found | None:
    """The raw ``wanted`` elements up to tag ``last``, or ``None`` (ask pydicom).

    Parsing stops at the first top-level tag above ``last``; absent tags are left out.
    """
    end = len(data)
    if end >= 6 and _looks_explicit(data) == implicit:
        return None  # pydicom would switch encodings here (with a warning)
    found: Found = {}
    pos = 0
    while pos < end:
        header = _header(data, pos, implicit, end)
        if header is None:
            return None
        tag, vr, length, start = header
        if tag > last:
            break
        if length == _UNDEFINED:
            if tag in wanted or vr not in (None, "SQ"):
                return None  # a wanted sequence, an UN (or other VR): pydicom's to read
            after = _skip_to(data, start, implicit, end, _SEQUENCE_END)
            if after is None:
                return None
            pos = after
            continue
        pos = start + length
        if pos > end:
            return None
        if tag in wanted:
            found[tag] = (vr, length, bytes(data[start:pos]), start)
    return found


def plain_text(tag: int, vr: str | None, value: bytes) -> str | None:
    """The value as pydicom's conversion gives it, for one printable-ASCII ``UI``,
    ``LO``, ``SH`` or ``CS`` value (implicit VR: the dictionary's); else ``None``."""
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    text = value.rstrip(b"\0 ")
    if vr in _PLAIN_VRS and _PLAIN.fullmatch(text):
        return text.decode("ascii")
    return None


def _looks_explicit(data: Buffer) -> bool:
    """pydicom's test of the first element: are bytes 4-5 two upper-case letters?"""
    return 0x40 < data[4] < 0x5B and 0x40 < data[5] < 0x5B


def _header(
    data: Buffer, pos: int, implicit: bool, end: int
) -> tuple[int, str | None, int, int] | None:
    """(tag, VR, length, value offset) of the element at ``pos``; ``None``: cannot tell."""
    if pos + 8 > end:
        return None
    group, element = _TAG.unpack_from(data, pos)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # items and delimiters have no VR in any encoding
        return tag, None, _U32.unpack_from(data, pos + 4)[0], pos + 8
    code = bytes(data[pos + 4 : pos + 6])
    if code in _SHORT:
        return tag, code.decode(), _U16.unpack_from(data, pos + 6)[0], pos + 8
    if code in _LONG and pos + 12 <= end:
        return tag, code.decode(), _U32.unpack_from(data, pos + 8)[0], pos + 12
    return None


def _skip_to(data: Buffer, pos: int, implicit: bool, end: int, delimiter: int) -> int | None:
    """The offset after ``delimiter``: the end of an undefined-length sequence
    (:data:`_SEQUENCE_END`, items before it) or item (:data:`_ITEM_END`, elements)."""
    in_sequence = delimiter == _SEQUENCE_END
    while True:
        header = _header(data, pos, implicit, end)
        if header is None:
            return None
        tag, vr, length, pos = header
        if tag == delimiter:
            return pos
        if (tag == _ITEM) != in_sequence:
            return None  # a sequence holds items only, an item no items
        if length != _UNDEFINED:
            pos += length
        elif in_sequence or vr in (None, "SQ"):
            after = _skip_to(data, pos, implicit, end, _ITEM_END if in_sequence else _SEQUENCE_END)
            if after is None:
                return None
            pos = after
        else:
            return None  # an UN (or other VR) of undefined length: pydicom's to read
        if pos > end:
            return None


__all__ = ["Found", "plain_text", "scan"]
