"""Read a few tags from a received data set without decoding the rest.

The SCP needs Patient ID, Study and Series Instance UID and the extra tags an AE's
processor asked for (e.g. a custom ``groupBy``). They are read from the encoded bytes
as received: parsing stops after the highest wanted tag, so pixel data is never
touched (PS3.5 §7: elements are in ascending tag order).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from io import SEEK_CUR, SEEK_END, SEEK_SET, BytesIO, RawIOBase
from typing import Any, BinaryIO, cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from streams.scp.scan import Found, plain_text, scan

PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SPECIFIC_CHARACTER_SET = 0x00080005
#: The tags every instance.received event carries.
CORE_TAGS: tuple[int, ...] = (PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)


class TagReadError(ValueError):
    """The data set could not be parsed far enough to read the wanted tags."""


def parse_tag(text: str) -> int:
    """``"0010,0020"``, ``"(0010,0020)"`` or ``"00100020"`` → ``0x00100020``."""
    cleaned = text.strip().strip("()").replace(",", "").replace(" ", "")
    if len(cleaned) != 8:
        raise ValueError(f"{text!r} is not a DICOM tag; write it as 8 hex digits, e.g. 00100020")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a DICOM tag; write it as 8 hex digits, e.g. 00100020"
        ) from None


def tag_key(tag: int) -> str:
    """``0x0020000D`` → ``"0020000D"``: the tag as a key of ``instance.received.tags``."""
    return f"{tag:08X}"


def _encoding(transfer_syntax_uid: str) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated) of a transfer syntax.

    Unknown UIDs fall back to Explicit VR Little Endian, the encoding of every
    compressed and most private syntaxes.
    """
    uid = UID(transfer_syntax_uid)
    try:
        return uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated
    except ValueError:
        return False, True, False


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, Sequence):
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def element_text(elem: DataElement) -> str:
    """A data element's value as one string (multiple values joined with ``\\``)."""
    return _text(elem.value)


def read_tags(
    dataset: bytes | bytearray | memoryview,
    transfer_syntax_uid: str,
    tags: Iterable[int],
    *,
    fast: bool = True,
) -> dict[int, str]:
    """Values of ``tags`` in an encoded data set, as strings; absent tags are left out.

    Raises :class:`TagReadError` when the bytes cannot be parsed up to those tags.
    Little-endian data sets are walked by :func:`~streams.scp.scan.scan` first;
    ``fast=False`` lets pydicom read every one (the reference the walk is tested against).
    """
    wanted = sorted(set(tags))
    if not wanted:
        return {}
    implicit, little, deflated = _encoding(transfer_syntax_uid)
    found = None
    if fast and little and not deflated:
        found = scan(dataset, implicit, {*wanted, SPECIFIC_CHARACTER_SET}, wanted[-1])
        texts = _plain_texts(found, wanted) if found is not None else None
        if texts is not None:
            return texts
    try:
        if found is not None:
            ds = _dataset(found, implicit)
        else:
            data = zlib.decompress(dataset, -zlib.MAX_WBITS) if deflated else dataset
            ds = _read_prefix(data, implicit, little, wanted)
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise TagReadError(f"cannot read tags from the data set: {exc}") from exc
    return {tag: _value_text(ds, tag) for tag in wanted if tag in ds}


def _read_prefix(
    data: bytes | bytearray | memoryview, implicit: bool, little: bool, wanted: list[int]
) -> Dataset:
    """pydicom's ``read_dataset`` of the elements up to the last wanted tag."""
    # Read in place: a BytesIO would first copy the whole data set (pixels included).
    source = cast(BinaryIO, BytesIO(data) if isinstance(data, bytes) else _ViewReader(data))
    last = wanted[-1]

    def past_last(tag: BaseTag, vr: str | None, length: int) -> bool:
        return bool(tag > last)

    specific: list[BaseTag | int] = [Tag(t) for t in (SPECIFIC_CHARACTER_SET, *wanted)]
    return read_dataset(source, implicit, little, stop_when=past_last, specific_tags=specific)


def _plain_texts(found: Found, wanted: Iterable[int]) -> dict[int, str] | None:
    """The found values if :func:`~streams.scp.scan.plain_text` decodes every one
    (plain values read the same in every character set)."""
    result: dict[int, str] = {}
    for tag in wanted:
        if tag in found:
            vr, _, value, _ = found[tag]
            text = plain_text(tag, vr, value)
            if text is None:
                return None
            result[tag] = text
    return result


def _dataset(found: Found, implicit: bool) -> Dataset:
    """The elements :func:`~streams.scp.scan.scan` found, as ``read_dataset`` builds them
    (little endian; the character set, if present, decides how text decodes)."""
    raw = {
        BaseTag(tag): RawDataElement(BaseTag(tag), vr, length, value, tell, implicit, True)
        for tag, (vr, length, value, tell) in found.items()
    }
    charset = raw.get(BaseTag(SPECIFIC_CHARACTER_SET))
    ds = Dataset(cast(dict[BaseTag, DataElement | RawDataElement], raw))
    encoding: str | list[str] = default_encoding
    if charset is not None:
        encoding = convert_encodings(convert_raw_data_element(charset).value)
    ds.set_original_encoding(implicit, True, encoding)
    return ds


class _ViewReader(RawIOBase):
    """A read-only, seekable file over a buffer, without copying it."""

    def __init__(self, buffer: bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(buffer)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        base = {SEEK_SET: 0, SEEK_CUR: self._pos, SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _value_text(ds: Any, tag: int) -> str:
    """The element as text; an invalid value (e.g. IS "1A") falls back to its raw bytes."""
    try:
        return element_text(ds[tag])
    except Exception:
        raw = ds.get_item(tag)
        value = getattr(raw, "value", b"")
        if isinstance(value, bytes | bytearray):
            return bytes(value).decode("latin-1").rstrip("\x00 ")
        return str(value)
