"""The SCP's header walk (streams.scp.scan) reads what pydicom reads, or hands over."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from streams.scp.scan import plain_text, scan
from streams.scp.tags import CORE_TAGS, TagReadError, read_tags

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
REFERENCED_IMAGES = 0x00081140
REFERENCED_SOP_INSTANCE = 0x00081155  # only inside ReferencedImageSequence items here
PRIVATE_VALUE = 0x00091001
WANTABLE = [
    0x00080008,  # ImageType CS
    0x00080050,  # AccessionNumber SH
    0x00080060,  # Modality CS
    REFERENCED_IMAGES,  # SQ
    REFERENCED_SOP_INSTANCE,
    PRIVATE_VALUE,
    0x00100010,  # PatientName PN
    *CORE_TAGS,
    0x00200013,  # InstanceNumber IS
]


def _encoded(ds: Dataset, *, implicit: bool) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR = implicit
    buf.is_little_endian = True
    with disable_value_validation():  # invalid values are written too: readers must cope
        write_dataset(buf, ds)
    return buf.getvalue()


def _both(data: bytes, ts: str, wanted: list[int]) -> tuple[object, object]:
    """(fast, pydicom): each the tags read, or the error type raised."""
    out: list[object] = []
    for fast in (True, False):
        try:
            out.append(read_tags(data, ts, wanted, fast=fast))
        except TagReadError:
            out.append(TagReadError)
    return out[0], out[1]


_TEXT = st.text(alphabet="AZaz09.^- \\äé\x00", max_size=12)
_UID = st.one_of(
    st.from_regex(r"[12](\.[1-9][0-9]{0,8}){1,6}", fullmatch=True),
    st.text(alphabet="0123456789.abc ", max_size=70),  # invalid ones too
)


@st.composite
def _item(draw: st.DrawFn, depth: int) -> Dataset:
    with disable_value_validation():
        return _item_of(draw, depth)


def _item_of(draw: st.DrawFn, depth: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = draw(_UID)
    if depth < 2 and draw(st.booleans()):
        item.ReferencedImageSequence = Sequence(draw(st.lists(_item(depth + 1), max_size=2)))
        item["ReferencedImageSequence"].is_undefined_length = draw(st.booleans())
    item.is_undefined_length_sequence_item = draw(st.booleans())
    return item


@st.composite
def _instances(draw: st.DrawFn) -> Dataset:
    with disable_value_validation():  # invalid values are set too: readers must cope
        return _instance(draw)


def _instance(draw: st.DrawFn) -> Dataset:
    ds = Dataset()
    charset = draw(st.sampled_from([None, "ISO_IR 100", "ISO_IR 192"]))
    if charset is not None:
        ds.SpecificCharacterSet = charset
    if draw(st.booleans()):
        ds.ImageType = draw(st.lists(st.sampled_from(["ORIGINAL", "PRIMARY", "AXIAL"]), max_size=3))
    if draw(st.booleans()):
        ds.AccessionNumber = draw(_TEXT)
    ds.Modality = draw(st.sampled_from(["CT", "MR", ""]))
    if draw(st.booleans()):
        ds.ReferencedImageSequence = Sequence(draw(st.lists(_item(0), max_size=3)))
        ds["ReferencedImageSequence"].is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):
        block = ds.private_block(0x0009, "ACME", create=True)
        block.add_new(0x01, "LO", draw(_TEXT))
    if draw(st.booleans()):
        ds.PatientName = draw(_TEXT)
    if draw(st.booleans()):
        ds.PatientID = draw(_TEXT)
    ds.StudyInstanceUID = draw(_UID)
    if draw(st.booleans()):
        ds.SeriesInstanceUID = draw(_UID)
    if draw(st.booleans()):
        ds.InstanceNumber = draw(st.integers(0, 99))
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * 4
    return ds


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    ds=_instances(),
    implicit=st.booleans(),
    wanted=st.lists(st.sampled_from(WANTABLE), min_size=1, max_size=5),
)
def test_the_walk_reads_what_pydicom_reads(ds: Dataset, implicit: bool, wanted: list[int]) -> None:
    data = _encoded(ds, implicit=implicit)
    if REFERENCED_IMAGES not in wanted:  # a wanted sequence is pydicom's to read
        # well-formed, little endian: the walk decides by itself (no hand-over)
        assert scan(data, implicit, {*wanted, 0x00080005}, max(wanted)) is not None
    fast, reference = _both(data, IMPLICIT_LE if implicit else EXPLICIT_LE, wanted)
    assert fast == reference


def _ct(implicit: bool = False) -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.9"
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    ds.PatientID = "PAT-7"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * 4
    return _encoded(ds, implicit=implicit)


@pytest.mark.parametrize("implicit", [False, True])
def test_a_typical_instance_takes_the_walk(implicit: bool) -> None:
    # Past an undefined-length sequence, with a character set: the walk decides alone.
    found = scan(_ct(implicit), implicit, {*CORE_TAGS, 0x00080005}, max(CORE_TAGS))
    assert found is not None
    texts = {tag: plain_text(tag, vr, value) for tag, (vr, _, value, _) in found.items()}
    assert texts[0x00100020] == "PAT-7"
    assert texts[0x0020000D] == "1.2.3"
    assert texts[0x0020000E] == "1.2.3.4"


def test_non_ascii_text_is_left_to_pydicom() -> None:
    assert plain_text(0x00100020, "LO", "Jörg".encode("latin-1")) is None
    assert plain_text(0x00100020, "LO", b"A\\B") is None  # two values
    assert plain_text(0x00100010, "PN", b"DOE^JOHN") is None  # not a plain VR
    assert plain_text(0x00091001, None, b"X") is None  # private, implicit: VR unknown
    assert plain_text(0x0020000D, None, b"1.2.3\x00") == "1.2.3"


def test_what_the_walk_cannot_tell_goes_to_pydicom() -> None:
    explicit = _ct()
    wanted = {*CORE_TAGS}
    last = max(CORE_TAGS)
    assert scan(explicit, True, wanted, last) is None  # declared implicit, looks explicit
    assert scan(_ct(implicit=True), False, wanted, last) is None  # and the other way round
    assert scan(explicit[:-3], False, wanted, 0x7FE00010) is None  # truncated value
    # an UN of undefined length (an implicit-VR sequence in an explicit data set)
    un = b"\x08\x00\x40\x11UN\x00\x00\xff\xff\xff\xff" + explicit[-20:]
    assert scan(un, False, wanted, last) is None
    # the readers agree on it all the same
    for data, ts in [(explicit, IMPLICIT_LE), (explicit[:-3], EXPLICIT_LE), (un, EXPLICIT_LE)]:
        with pytest.warns(UserWarning) if ts == IMPLICIT_LE else nullcontext():
            fast, reference = _both(data, ts, [*CORE_TAGS])
        assert fast == reference


def test_a_defined_length_sequence_is_skipped_by_its_length() -> None:
    item = b"\x08\x00\x55\x11UI\x04\x001.2\x00"
    sequence = b"\x08\x00\x40\x11SQ\x00\x00" + (8 + len(item)).to_bytes(4, "little")
    sequence += b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item
    data = sequence + b"\x10\x00\x20\x00LO\x02\x00P1"
    assert read_tags(data, EXPLICIT_LE, [0x00100020]) == {0x00100020: "P1"}
    assert read_tags(data, EXPLICIT_LE, [REFERENCED_SOP_INSTANCE]) == {}


def test_an_implicit_length_may_start_with_a_letter() -> None:
    # 0x241 bytes: the length's first byte is "A", the second is not a letter -- implicit
    # VR as pydicom reads it (it checks both bytes), so the walk reads on
    data = b"\x09\x00\x01\x10" + (0x241).to_bytes(4, "little") + b"x" * 0x241
    data += b"\x10\x00\x20\x00\x02\x00\x00\x00P1"
    found = scan(data, True, {0x00100020}, 0x00100020)
    assert found is not None
    assert found[0x00100020][2] == b"P1"


def test_a_sequence_with_something_else_than_items_goes_to_pydicom() -> None:
    stray = b"\x08\x00\x55\x11UI\x04\x001.2\x00"  # an element where an item must be
    data = (
        b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + stray + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    data += b"\x10\x00\x20\x00LO\x02\x00P1"
    assert scan(data, False, {0x00100020}, 0x00100020) is None
