"""Which presentation contexts the SCU proposes, and which one each instance uses (pure)."""

from __future__ import annotations

import io

import pytest
from helpers.dicom import make_ct
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from streams.scu import MAX_CONTEXTS, SendItem, choose, requested_contexts
from streams.scu.contexts import split_by_contexts
from streams.scu.outcome import as_items, describe_status, status_kind
from streams.scu.reading import Probe, probe

EXPLICIT, IMPLICIT = ExplicitVRLittleEndian, ImplicitVRLittleEndian


def test_own_syntax_first_each_alone_then_the_missing_fallbacks() -> None:
    pairs = [
        (CTImageStorage, RLELossless),
        (CTImageStorage, EXPLICIT),
        (MRImageStorage, JPEGLSLossless),
        (CTImageStorage, RLELossless),
    ]
    assert requested_contexts(pairs) == [
        (CTImageStorage, [RLELossless]),
        (CTImageStorage, [EXPLICIT]),
        (CTImageStorage, [IMPLICIT]),
        (MRImageStorage, [JPEGLSLossless]),
        (MRImageStorage, [EXPLICIT, IMPLICIT]),
    ]


def test_no_fallback_context_when_both_are_proposed_anyway() -> None:
    pairs = [(CTImageStorage, IMPLICIT), (CTImageStorage, EXPLICIT)]
    assert requested_contexts(pairs) == [(CTImageStorage, [IMPLICIT]), (CTImageStorage, [EXPLICIT])]


@pytest.mark.parametrize(
    ("own", "accepted", "kind", "syntax", "decompress"),
    [
        (RLELossless, [RLELossless, EXPLICIT], "as_is", RLELossless, False),
        (RLELossless, [IMPLICIT, EXPLICIT], "convert", EXPLICIT, True),
        (RLELossless, [IMPLICIT], "convert", IMPLICIT, True),
        (EXPLICIT, [IMPLICIT], "convert", IMPLICIT, False),
        (IMPLICIT, [EXPLICIT], "convert", EXPLICIT, False),
        (DeflatedExplicitVRLittleEndian, [EXPLICIT], "convert", EXPLICIT, False),
        (EXPLICIT, [EXPLICIT, IMPLICIT], "as_is", EXPLICIT, False),
    ],
)
def test_choice_mirrors_pynetdicom(
    own: str, accepted: list[str], kind: str, syntax: str, decompress: bool
) -> None:
    choice = choose(CTImageStorage, own, [(CTImageStorage, ts) for ts in accepted])
    assert (choice.kind, choice.transfer_syntax_uid, choice.decompress) == (
        kind,
        syntax,
        decompress,
    )


def test_no_context_for_the_class_names_it() -> None:
    choice = choose(MRImageStorage, EXPLICIT, [(CTImageStorage, EXPLICIT)])
    assert choice.kind == "no_context"
    assert "MR Image Storage" in choice.why


def test_big_endian_is_never_converted_and_compressed_never_transcoded() -> None:
    big = choose(CTImageStorage, ExplicitVRBigEndian, [(CTImageStorage, EXPLICIT)])
    assert big.kind == "cannot_convert" and "big-endian" in big.why
    other = choose(CTImageStorage, RLELossless, [(CTImageStorage, JPEGLSLossless)])
    assert other.kind == "cannot_convert" and "JPEG-LS Lossless" in other.why


def test_groups_keep_a_class_together_and_stay_under_the_limit() -> None:
    # 50 classes x (own + fallback) = 100 contexts, 30 more classes push it over 128
    pairs = [(f"1.2.3.{n}", EXPLICIT) for n in range(80) for _ in range(2)]
    groups = split_by_contexts(pairs, key=lambda p: p)
    assert [len(requested_contexts(g)) for g in groups] == [128, 32]
    assert sum(len(g) for g in groups) == len(pairs)
    assert groups[0][0] == pairs[0] and groups[1][-1] == pairs[-1]
    assert len(split_by_contexts(pairs[:10], key=lambda p: p)) == 1
    assert MAX_CONTEXTS == 128


def test_status_words() -> None:
    assert [status_kind(s) for s in (0x0000, 0x0001, 0xB000, 0xB007)] == ["sent"] * 4
    assert [status_kind(s) for s in (0xA700, 0xA900, 0xC000, 0x0122)] == ["refused"] * 4
    assert describe_status(0xA7FF) == "0xA7FF (out of resources)"
    assert describe_status(0xA900) == "0xA900 (data set does not match SOP class)"
    assert describe_status(0xC123) == "0xC123 (cannot understand)"


def _part10(**kwargs: object) -> bytes:
    ds = make_ct(**kwargs)  # type: ignore[arg-type]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_probe_reads_identity_from_files_and_bytes(tmp_path) -> None:
    data = _part10(sop_uid="1.2.3.4")
    (tmp_path / "a.dcm").write_bytes(data)
    items = as_items([tmp_path / "a.dcm", data, str(tmp_path / "a.dcm")])
    found = [probe(i, item) for i, item in enumerate(items)]
    assert all(isinstance(p, Probe) for p in found)
    assert {p.pair for p in found if isinstance(p, Probe)} == {(CTImageStorage, EXPLICIT)}
    assert [p.item.label for p in found if isinstance(p, Probe)] == [
        str(tmp_path / "a.dcm"),
        "#1",
        str(tmp_path / "a.dcm"),
    ]


def test_probe_failures_name_no_path(tmp_path) -> None:
    (tmp_path / "PAT-SECRET").mkdir()
    junk = tmp_path / "PAT-SECRET" / "junk.dcm"
    junk.write_bytes(b"not dicom at all" * 20)
    cases = {
        "missing": SendItem.file(tmp_path / "PAT-SECRET" / "gone.dcm"),
        "not_dicom": SendItem.file(junk),
        "unreadable": SendItem.file(tmp_path / "PAT-SECRET"),  # a directory
    }
    for reason, item in cases.items():
        outcome = probe(0, item)
        assert not isinstance(outcome, Probe)
        assert (outcome.kind, outcome.reason) == ("failed", reason), outcome
        assert "PAT-SECRET" not in outcome.error
        assert outcome.label == item.label


def test_probe_wants_the_sop_identity() -> None:
    ds = make_ct()
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.preamble = b"\x00" * 128
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    outcome = probe(3, SendItem.of_bytes(buf.getvalue(), "x"))
    assert not isinstance(outcome, Probe)
    assert (outcome.index, outcome.reason) == (3, "not_dicom")
    assert "SOP Instance UID" in outcome.error
