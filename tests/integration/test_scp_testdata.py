"""Every pydicom test file that DCMTK ``storescu`` will send reaches storage and Kafka intact.

Each file is sent on its own association, proposing the file's own transfer syntax
(``-R`` plus the matching ``-x?`` option), so nothing is transcoded on the way; the
stored data set must equal the sent one, and the instances topic must carry exactly
one ``instance.received`` per C-STORE, with the right UIDs. Files ``storescu`` refuses
to send are listed below with the reason; the test fails if that list changes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from helpers.dicom import dcmtk, storescu
from helpers.kafka import read_events
from helpers.scp import scp_config
from pydicom.data import get_testdata_files

from streams.events import RecordKeys
from streams.scp import ScpService
from streams.storage import sanitize_component, uri_to_path

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "TESTDATA"

# storescu option that proposes a file's own (compressed) transfer syntax.
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}

NOT_DICOM = "not a DICOM file DCMTK can parse"
NO_UIDS = "no SOP Class/Instance UID (not a storable instance)"
TRUNCATED = "truncated file"

#: What DCMTK 3.6.7 storescu refuses to send, and why.
EXPECTED_REFUSED = {
    "README.txt": NOT_DICOM,
    "crayons.icc": NOT_DICOM,
    "rtplan.dump": NOT_DICOM,
    "rtstruct.dump": NOT_DICOM,
    "test1.json": NOT_DICOM,
    "test_PN.json": NOT_DICOM,
    "zipMR.gz": NOT_DICOM,
    "dicomdirtests/README.txt": NOT_DICOM,
    "dicomdirtests/TINY_ALPHA/README": NOT_DICOM,
    "no_meta.dcm": NOT_DICOM,  # no preamble, starts with a group-8 element DCMTK misreads
    "SC_rgb_jpeg.dcm": NOT_DICOM,  # pydicom's deliberately corrupt VR test file
    "MR_truncated.dcm": TRUNCATED,
    "rtplan_truncated.dcm": TRUNCATED,
    "UN_sequence.dcm": NO_UIDS,
    "empty_charset_LEI.dcm": NO_UIDS,
    "meta_missing_tsyntax.dcm": NO_UIDS,
    "nested_priv_SQ.dcm": NO_UIDS,
    "no_meta_group_length.dcm": NO_UIDS,
    "priv_SQ.dcm": NO_UIDS,
    "rtdose_rle.dcm": NO_UIDS,
    "rtdose_rle_1frame.dcm": NO_UIDS,
    "dicomdirtests/DICOMDIR": NO_UIDS,
    "dicomdirtests/DICOMDIR-bigEnd": NO_UIDS,
    "dicomdirtests/DICOMDIR-empty.dcm": NO_UIDS,
    "dicomdirtests/DICOMDIR-implicit": NO_UIDS,
    "dicomdirtests/DICOMDIR-nooffset": NO_UIDS,
    "dicomdirtests/DICOMDIR-nopatient": NO_UIDS,
    "dicomdirtests/DICOMDIR-reordered": NO_UIDS,
    "dicomdirtests/TINY_ALPHA/DICOMDIR": NO_UIDS,
}


def _reason(output: str) -> str:
    if "than remaining bytes" in output and ("Unknown Tag" in output or "premature" not in output):
        if "PixelData" in output or "IsocenterPosition" in output:
            return TRUNCATED
        return NOT_DICOM
    if "premature end" in output or "Invalid stream" in output:
        return TRUNCATED
    if "missing SOP class" in output or "No SOP Class or Instance UID" in output:
        return NO_UIDS
    return "other: " + " | ".join(
        line for line in output.splitlines() if line.startswith(("E:", "F:"))
    )


def _read(path: str | Path | bytes) -> pydicom.Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            src = pydicom.filebase.DicomBytesIO(path) if isinstance(path, bytes) else path
            return pydicom.dcmread(src, force=True)
        except Exception:
            return None


# DCMTK drops these in transit (group lengths are optional, PS3.5 §7.2; Data Set
# Trailing Padding carries no information, PS3.10 §7.2), so they are not compared.
def _comparable(ds: pydicom.Dataset) -> dict[int, object]:
    return {int(e.tag): e for e in ds if e.tag != 0xFFFCFFFC and e.tag.element != 0x0000}


def _differences(sent: pydicom.Dataset, got: pydicom.Dataset) -> list[str]:
    a, b = _comparable(sent), _comparable(got)
    out = [f"missing {t:08X}" for t in a if t not in b]
    out += [f"extra {t:08X}" for t in b if t not in a]
    out += [f"differs {t:08X}" for t in a if t in b and not _same(a[t], b[t])]
    return out


def _same(x: object, y: object) -> bool:
    if x == y:
        return True
    # Some test files label encapsulated Pixel Data OW; DCMTK sends it as OB (PS3.5
    # §A.4 requires OB). Same bytes, corrected VR.
    return bool(
        getattr(x, "tag", None) == 0x7FE00010
        and {getattr(x, "VR", None), getattr(y, "VR", None)} == {"OB", "OW"}
        and getattr(x, "value", None) == getattr(y, "value", None)
    )


def _corpus() -> tuple[
    list[Path], dict[Path, str], dict[Path, pydicom.Dataset | None], list[list[Path]]
]:
    """pydicom's test files, their display names, parsed data sets, and groups of files
    that share a SOP Instance UID."""
    base = Path(get_testdata_files("CT_small.dcm")[0]).parent
    files = sorted(Path(f) for f in get_testdata_files() if os.path.isfile(f))
    names = {f: (str(f.relative_to(base)) if f.is_relative_to(base) else f.name) for f in files}
    sent_ds = {f: _read(f) for f in files}
    groups: dict[str, list[Path]] = collections.defaultdict(list)
    for f in files:
        ds = sent_ds[f]
        groups[str(ds.get("SOPInstanceUID", "")) if ds is not None else f"?{f}"].append(f)
    return files, names, sent_ds, list(groups.values())


async def test_every_sendable_pydicom_file_is_stored_and_published(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    assert dcmtk("storescu"), "DCMTK storescu is required"
    files, names, sent_ds, groups = await asyncio.to_thread(_corpus)

    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    config = scp_config(
        storage,
        kafka_bootstrap,
        prefix,
        ae_titles=(AE,),
        ae_extra={AE: {"overwrite_same_instance": True}},
    )
    refused: dict[str, str] = {}
    stored: dict[Path, bytes] = {}

    async with ScpService(config) as scp:

        def send_group(group: list[Path]) -> None:
            # Files sharing a SOP Instance UID go one after another: each overwrites
            # the last, so the stored copy is taken right after its own send.
            for f in group:
                ds = sent_ds[f]
                ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds is not None else ""
                extra = ["-R", *([PROPOSE[ts]] if ts in PROPOSE else [])]
                proc = storescu(scp.port, [f], aec=AE, extra=extra)
                out = proc.stdout + proc.stderr
                if proc.returncode != 0 or "E:" in out or "F:" in out:
                    refused[names[f]] = _reason(out)
                    continue
                sop = sanitize_component(str(ds.SOPInstanceUID)) if ds is not None else ""
                copies = sorted(
                    (storage / AE).rglob(f"{sop}.dcm"), key=lambda p: p.stat().st_mtime_ns
                )
                assert copies, f"{names[f]}: acknowledged but not stored"
                stored[f] = copies[-1].read_bytes()

        with ThreadPoolExecutor(4) as pool:
            await asyncio.gather(
                *(asyncio.get_running_loop().run_in_executor(pool, send_group, g) for g in groups)
            )

        assert refused == EXPECTED_REFUSED
        assert len(stored) == len(files) - len(EXPECTED_REFUSED)

        events = await read_events(
            kafka_bootstrap, f"{prefix}.instances", at_least=len(stored), timeout_s=60
        )

    per_uid = collections.Counter(env.data.sop_instance_uid for _, env in events)
    expected_uid = collections.Counter(str(sent_ds[f].SOPInstanceUID) for f in stored)
    assert per_uid == expected_uid  # exactly one event per C-STORE, none lost or doubled
    assert len({env.id for _, env in events}) == len(events)

    mismatched = []
    for f, raw in stored.items():
        sent, got = sent_ds[f], _read(raw)
        assert sent is not None and got is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's test files hold invalid values
            diff = _differences(sent, got)
            if diff:
                mismatched.append(f"{names[f]}: {diff}")
    assert mismatched == []

    by_uid = collections.defaultdict(list)
    for key, env in events:
        by_uid[env.data.sop_instance_uid].append((key, env))
    for f in stored:
        ds = sent_ds[f]
        matches = by_uid[str(ds.SOPInstanceUID)]
        key, env = matches[0]
        data = env.data
        assert env.type == "instance.received" and env.source == "test-adapter"
        assert data.called_ae == AE and data.calling_ae == "STORESCU"
        assert data.calling_host == "127.0.0.1"
        assert data.sop_class_uid == str(ds.SOPClassUID)
        assert data.patient_id == str(ds.get("PatientID", ""))
        assert data.study_instance_uid == str(ds.get("StudyInstanceUID", ""))
        assert data.series_instance_uid == str(ds.get("SeriesInstanceUID", ""))
        assert key == RecordKeys()(AE, data.patient_id)
        path = uri_to_path(data.uri)
        assert path.is_relative_to(storage.absolute()) and path.exists()
