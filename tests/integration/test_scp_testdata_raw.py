"""The pydicom test files DCMTK refuses to send, sent anyway: a proper answer for each.

test_scp_testdata.py sends every pydicom test file ``storescu`` will send; the rest
(no meta, truncated, no SOP UIDs, DICOMDIRs, files that are not DICOM at all) are
listed there as ``EXPECTED_REFUSED``. Here each of those goes over the wire anyway:
with pynetdicom when pydicom reads it (``force=True``) with its SOP Class and Instance
UIDs and can encode it, else as raw bytes — the file after its meta information, or
the whole file — in a C-STORE-RQ naming the SOP class and instance from the meta
information, or a placeholder (tests/helpers/rawscu.py). A SOP class the SCP does not
accept (Media Storage Directory) is sent again as Secondary Capture.

Expected for each: a DICOM status (Success only if the file is stored and its
instance.received event published), or an A-ABORT; and the SCP keeps serving (C-ECHO
and a C-STORE after every file). The answers are listed in ``EXPECTED``; the test
fails if one changes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from helpers import rawscu, scu
from helpers.dicom import make_ct
from helpers.kafka import read_events
from helpers.scp import scp_config
from pydicom.data import get_testdata_files
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from test_scp_testdata import EXPECTED_REFUSED

from streams.scp import ScpService
from streams.storage import uri_to_path

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "TESTDATA"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

SUCCESS = "0x0000"
#: A900 Data Set does not match SOP Class: no SOP Instance UID (0008,0018) in what was
#: sent (not a composite instance: text, JSON, ICC, gzip, DICOMDIRs, UID-less files).
MISMATCH = "0xa900"
#: How each file was sent and what the SCP answered. Truncated files whose identifying
#: elements arrived are stored as received (the SCP reads only the first elements).
EXPECTED: dict[str, str] = {
    "MR_truncated.dcm": f"pynetdicom {SUCCESS}",
    "README.txt": f"raw {MISMATCH}",
    "SC_rgb_jpeg.dcm": f"raw {SUCCESS}",  # pydicom cannot encode its corrupt VR
    "UN_sequence.dcm": f"raw {MISMATCH}",
    "crayons.icc": f"raw {MISMATCH}",
    "dicomdirtests/DICOMDIR": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-bigEnd": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-empty.dcm": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-implicit": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-nooffset": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-nopatient": f"raw as SC {MISMATCH}",
    "dicomdirtests/DICOMDIR-reordered": f"raw as SC {MISMATCH}",
    "dicomdirtests/README.txt": f"raw {MISMATCH}",
    "dicomdirtests/TINY_ALPHA/DICOMDIR": f"raw as SC {MISMATCH}",
    "dicomdirtests/TINY_ALPHA/README": f"raw {MISMATCH}",
    "empty_charset_LEI.dcm": f"raw {MISMATCH}",
    "meta_missing_tsyntax.dcm": f"raw {MISMATCH}",
    "nested_priv_SQ.dcm": f"raw {MISMATCH}",
    "no_meta.dcm": f"raw {MISMATCH}",
    "no_meta_group_length.dcm": f"raw {MISMATCH}",
    "priv_SQ.dcm": f"raw {MISMATCH}",
    "rtdose_rle.dcm": f"pynetdicom {SUCCESS}",
    "rtdose_rle_1frame.dcm": f"pynetdicom {SUCCESS}",
    "rtplan.dump": f"raw {MISMATCH}",
    "rtplan_truncated.dcm": f"pynetdicom {SUCCESS}",
    "rtstruct.dump": f"raw {MISMATCH}",
    "test1.json": f"raw {MISMATCH}",
    "test_PN.json": f"raw {MISMATCH}",
    "zipMR.gz": f"raw {MISMATCH}",
}


@dataclass(frozen=True)
class Prepared:
    """How one file goes over the wire."""

    name: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data: bytes
    dataset: pydicom.Dataset | None  # sent with pynetdicom when set


def _meta_and_offset(path: Path) -> tuple[dict[str, str], int]:
    """The file meta information (as text) and where the data set starts."""
    try:
        with path.open("rb") as fp:
            read_preamble(fp, force=True)
            meta = _read_file_meta_info(fp)
            offset = fp.tell()
    except Exception:
        return {}, 0
    keys = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    return {k: str(meta.get(k, "") or "") for k in keys}, offset


def _prepare(path: Path, name: str) -> Prepared:
    meta, offset = _meta_and_offset(path)
    ts = meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian
    ds: pydicom.Dataset | None
    try:
        ds = pydicom.dcmread(path, force=True)
        ds.SOPClassUID, ds.SOPInstanceUID  # noqa: B018  (both required to send it so)
    except Exception:
        ds = None
    sop_class = meta.get("MediaStorageSOPClassUID") or SECONDARY_CAPTURE
    sop = meta.get("MediaStorageSOPInstanceUID") or generate_uid()
    if ds is not None:
        sop_class, sop = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    return Prepared(name, sop_class, sop, ts, path.read_bytes()[offset:], ds)


def _send_with_pynetdicom(port: int, item: Prepared) -> str | None:
    """The status pynetdicom got, or ``None`` if it could not send the data set."""
    ds = item.dataset
    assert ds is not None
    try:
        result, statuses = scu.store(port, [ds], aec=AE)
    except Exception:
        return None  # pydicom cannot encode it: the raw bytes go instead
    if not result.established or statuses == [None]:
        return None
    return f"{statuses[0]:#06x}"


def _send_raw(port: int, item: Prepared, sop_class: str) -> tuple[str, bool]:
    """(status or "aborted"/"closed", whether the SOP class's context was accepted)."""
    request = rawscu.RawStore(sop_class, item.sop_instance_uid, item.transfer_syntax_uid, item.data)
    result = rawscu.store(port, [request], aec=AE)
    assert result.associated, item.name
    if result.rejected_contexts:
        return "context-rejected", False
    status = result.statuses[0]
    return (f"{status:#06x}" if status is not None else result.ended), True


def _send(port: int, item: Prepared) -> tuple[str, str, str]:
    """(how it was sent, the answer, the SOP instance UID it was sent as)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # every one of these files is odd on purpose
        if item.dataset is not None:
            answer = _send_with_pynetdicom(port, item)
            if answer is not None:
                return "pynetdicom", answer, item.sop_instance_uid
        answer, accepted = _send_raw(port, item, item.sop_class_uid)
        if accepted:
            return "raw", answer, item.sop_instance_uid
        answer, _ = _send_raw(port, item, SECONDARY_CAPTURE)
        return "raw as SC", answer, item.sop_instance_uid


def _probe(port: int) -> str:
    result, status = scu.echo(port, aec=AE)
    assert result.established and status == 0
    ds = make_ct(patient_id="PROBE")
    result, statuses = scu.store(port, [ds], aec=AE)
    assert result.established and statuses == [0]
    return str(ds.SOPInstanceUID)


async def test_every_pydicom_file_dcmtk_refuses_gets_a_proper_answer(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    base = Path(get_testdata_files("CT_small.dcm")[0]).parent
    items = [_prepare(base / name, name) for name in sorted(EXPECTED_REFUSED)]
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(storage, kafka_bootstrap, prefix, ae_titles=(AE,))
    answers: dict[str, str] = {}
    sent_as: dict[str, str] = {}
    successes: collections.Counter[str] = collections.Counter()  # two files share a UID
    probes: list[str] = []
    async with ScpService(config) as scp:
        for item in items:
            how, answer, sop = await asyncio.to_thread(_send, scp.port, item)
            answers[item.name] = answer
            sent_as[item.name] = how
            if answer == SUCCESS:
                successes[sop] += 1
            # The SCP keeps serving after each one.
            probes.append(await asyncio.to_thread(_probe, scp.port))
        events = await read_events(
            kafka_bootstrap, f"{prefix}.instances", at_least=successes.total() + len(probes)
        )

    summary = collections.Counter(f"{sent_as[n]}: {a}" for n, a in answers.items())
    print(f"\npydicom files DCMTK refuses, sent anyway: {len(items)}; {dict(summary)}")
    for name in sorted(answers):
        print(f"  {name:40} {sent_as[name]:11} {answers[name]}")
    assert {n: f"{sent_as[n]} {a}" for n, a in answers.items()} == EXPECTED

    published = collections.Counter(env.data.sop_instance_uid for _, env in events)
    # Success ⇔ stored and published, once per C-STORE; nothing else stored.
    assert {sop: published[sop] for sop in successes} == dict(successes)
    assert set(published) == set(successes) | set(probes)
    stored = {p for p in storage.rglob("*.dcm") if ".outbox" not in p.parts}
    assert stored == {uri_to_path(env.data.uri) for _, env in events}
    assert [r for r in caplog.records if r.exc_info and r.name.startswith("streams")] == []
