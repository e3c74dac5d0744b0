"""Bad UIDs and Patient IDs over the wire: a proper status, never a file outside storage.

Issue 8 ("bad input"): empty, multi-valued, over-long and non-UID values, and values
aimed at path traversal, in the SOP Instance UID, the Study and Series Instance UIDs
and the Patient ID of a C-STORE. What the SCP answers:

* **SOP Instance UID** (the command's Affected SOP Instance UID, which names the file
  and identifies the instance in every event): a value that is not a UID (PS3.5 §9.1:
  digits in dot-separated components, at most 64 characters) is refused with 0x0117
  "Invalid SOP Instance" (PS3.7 Annex C); nothing is stored or published.
* **Study/Series Instance UID, Patient ID** (attributes of the data set, which is
  stored as received): Success, the file under sanitised path components strictly
  inside ``<storage>/<AE>/``, and the event carrying the values as received.

Senders: pynetdicom for everything it will send; raw PDUs (tests/helpers/rawscu.py)
for the SOP Instance UIDs pynetdicom refuses (empty, over 64 characters).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import rawscu, scu
from helpers.dicom import make_ct
from helpers.kafka import read_events
from helpers.scp import scp_config
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dsutils import encode

from streams.scp import ScpService
from streams.scp.statuses import INVALID_SOP_INSTANCE, SUCCESS
from streams.storage import sanitize_component, uri_to_path

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

AE = "CT-AE"

#: Values no careful sender would put in a UID (or a Patient ID).
BAD_VALUES = {
    "empty": "",
    "multi-valued": "1.2\\3.4",
    "over-long": "1." + "2" * 70,
    "non-uid-chars": "1.2.abc",
    "dot-dot": "..",
    "etc-passwd": "../../etc/passwd",
    "absolute": "/abs/path",
    "slash": "a/b",
    "windows": "C:\\x",
    "nul": "1.2\x003",
    "very-long": "9" * 300,
}
FIELDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")


def _dataset(field: str, value: str) -> Dataset:
    ds = make_ct(patient_id="PAT-BAD-UIDS")
    if field == "SOPInstanceUID":
        ds.file_meta.MediaStorageSOPInstanceUID = value
    setattr(ds, field, value)
    return ds


def _send(port: int, field: str, value: str) -> int | None:
    """One C-STORE of a CT data set with ``field`` set to ``value``; its status."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom and pynetdicom warn about each bad value
        ds = _dataset(field, value)
        try:
            if field == "SOPInstanceUID" and not value:
                # pynetdicom would send no Affected SOP Instance UID at all (and log
                # a traceback of its own): send the empty value itself.
                raise ValueError("empty")
            result, statuses = scu.store(port, [ds], aec=AE)
        except (ValueError, TypeError):
            # pynetdicom will not put this SOP Instance UID in a command: raw PDUs will.
            data = encode(ds, False, True)
            assert data is not None
            ts = str(ds.file_meta.TransferSyntaxUID)
            request = rawscu.RawStore(str(ds.SOPClassUID), value, ts, bytes(data))
            raw = rawscu.store(port, [request], aec=AE)
            assert raw.associated and raw.ended == "released", raw
            return raw.statuses[0]
    assert result.established
    return statuses[0]


def _expected(field: str) -> int:
    return INVALID_SOP_INSTANCE if field == "SOPInstanceUID" else SUCCESS


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".outbox" not in p.parts)


async def test_bad_uids_and_patient_ids_get_a_proper_status_and_stay_inside_storage(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    prefix = unique_name("scp")
    storage = tmp_path / "deep" / "storage"
    config = scp_config(storage, kafka_bootstrap, prefix)
    cases = [(f, name, value) for f in FIELDS for name, value in BAD_VALUES.items()]
    answered: dict[tuple[str, str], int | None] = {}
    async with ScpService(config) as scp:
        for field, name, value in cases:
            answered[(field, name)] = await asyncio.to_thread(_send, scp.port, field, value)
        # The SCP still serves: a good instance after all of them is stored.
        good = make_ct(sop_uid=generate_uid(), patient_id="PAT-GOOD")
        result, statuses = await asyncio.to_thread(scu.store, scp.port, [good], aec=AE)
        assert result.established and statuses == [SUCCESS]
        successes = sum(status == SUCCESS for status in answered.values()) + 1
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=successes)

    wrong = {
        f"{field}={name}": f"{status:#06x}" if status is not None else None
        for (field, name), status in answered.items()
        if status != _expected(field)
    }
    assert wrong == {}, "unexpected statuses"

    # Nothing outside storage; every file strictly inside <storage>/<AE>/, 4 levels deep.
    everything = _files(tmp_path)
    assert [p for p in everything if not p.is_relative_to(storage)] == []
    stored = _files(storage)
    assert len(stored) == successes == len(events)
    for path in stored:
        parts = path.relative_to(storage).parts
        assert parts[0] == AE and len(parts) == 4, parts
        assert all(part not in ("", ".", "..") and "/" not in part for part in parts)

    # One event per Success, pointing at its file, with the values as received.
    received = []
    for _, env in events:
        data = env.data
        path = uri_to_path(data.uri)
        assert path in stored
        assert path.parent.name == sanitize_component(data.series_instance_uid)
        assert path.parent.parent.name == sanitize_component(data.study_instance_uid)
        assert path.stem == sanitize_component(data.sop_instance_uid)
        received.append(data)
    for name, value in BAD_VALUES.items():
        stripped = value.rstrip("\x00 ")
        assert any(d.study_instance_uid == stripped for d in received), name
        assert any(d.series_instance_uid == stripped for d in received), name
        assert any(d.patient_id == stripped for d in received), name

    # Refusals are one warning line each, and nothing in the log is a traceback.
    assert [r for r in caplog.records if r.exc_info] == []
    refusals = [r for r in caplog.records if "refused 0x0117" in r.getMessage()]
    assert len(refusals) == len(BAD_VALUES)
    assert all(r.levelno == logging.WARNING for r in refusals)
