"""The pure parts of the load rounds (tests/load/): files, storescu output, flatness."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import CTImageStorage

from tests.helpers.load import MIB, ProcStats, Shape, store_statuses, write_round
from tests.helpers.loadrun import Bound, RoundFigures, flatness

STORESCU_LOG = """\
I: Requesting Association
I: Association Accepted (Max Send PDV: 16372)
I: Sending file: /tmp/r/a00/1.2.3.4.dcm
I: Converting transfer syntax: Little Endian Explicit -> Little Endian Explicit
I: Sending Store Request (MsgID 1, CT)
XMIT: .
I: Received Store Response (Success)
I: Sending file: /tmp/r/a00/1.2.3.5.dcm
I: Sending Store Request (MsgID 2, CT)
I: Received Store Response (Out of Resources)
I: Sending file: /tmp/r/a00/1.2.3.6.dcm
I: Sending Store Request (MsgID 3, CT)
E: Store Failed, file: /tmp/r/a00/1.2.3.6.dcm:
I: Releasing Association
"""


def test_storescu_log_gives_a_status_per_file() -> None:
    assert store_statuses(STORESCU_LOG) == {"1.2.3.4": "Success", "1.2.3.5": "Out of Resources"}


def test_a_round_is_one_study_per_association_with_fresh_valid_uids(tmp_path: Path) -> None:
    shape = Shape(associations=3, instances=8, series=2, patients=2)
    planned = write_round(tmp_path / "r1", shape)
    again = write_round(tmp_path / "r2", shape)
    assert [p.patient_id for p in planned] == ["LOADPAT-0000", "LOADPAT-0001", "LOADPAT-0000"]
    assert not {p.study_uid for p in planned} & {p.study_uid for p in again}
    for plan in planned:
        assert len(plan.files) == len(plan.sops) == 8
        series_seen = []
        for path, sop in zip(plan.files, plan.sops, strict=True):
            ds = pydicom.dcmread(path)
            assert ds.SOPClassUID == CTImageStorage
            assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == sop
            assert (ds.PatientID, ds.StudyInstanceUID) == (plan.patient_id, plan.study_uid)
            assert len(sop) <= 64 and all(c.isdigit() or c == "." for c in sop)
            series_seen.append(ds.SeriesInstanceUID)
        assert sorted(set(series_seen)) == sorted(plan.series_uids)
        assert series_seen.count(plan.series_uids[0]) == 4


def _round(number: int, rss_mib: float, fds: int = 10, threads: int = 4) -> RoundFigures:
    stats = ProcStats(int(rss_mib * MIB), fds, threads, ("socket",) * fds)
    return RoundFigures(
        number, 100, 1.0, 1.0, 1, 2, {"submitter": stats}, {"submitter": 0}, {"submitter": 0.0}
    )


def test_memory_growing_round_after_round_is_not_flat() -> None:
    bound = Bound(fraction=0.10, floor=16 * MIB)
    # measured before the fix: the submitter grew ~10 MiB per 10,000 instances
    leaking = [_round(1, 114.2), _round(2, 125.5), _round(3, 135.5)]
    assert flatness(leaking, bound) == [
        "submitter: RSS 114.2 MiB after round 1, 135.5 after round 3 (allowed 130.2)"
    ]
    # a one-off allocator step (measured up to ~8 MiB) is flat
    assert flatness([_round(1, 105.3), _round(2, 113.2), _round(3, 113.3)], bound) == []


def test_an_extra_fd_or_many_threads_are_not_flat() -> None:
    bound = Bound(threads=2)
    assert flatness([_round(1, 100), _round(2, 100, threads=6), _round(3, 100)], bound) == []
    problems = flatness([_round(1, 100), _round(2, 100, fds=11), _round(3, 100, threads=7)], bound)
    assert problems == [
        "submitter: 10 open fds after round 1, 11 after round 2 (new: ['socket'], gone: [])",
        "submitter: 4 threads after round 1, 7 after round 3 (allowed 6)",
    ]
