"""Build small DICOM instances with pydicom and send them with real peers.

DCMTK's ``storescu``/``echoscu`` are found on PATH *skipping* the same-named Python
console scripts that pynetdicom installs into the venv (those shadow DCMTK).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def dcmtk(name: str) -> str | None:
    """Absolute path of a DCMTK binary, or None (Python scripts of that name are skipped)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / name
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        with open(candidate, "rb") as f:
            if f.read(2) == b"#!":
                continue  # pynetdicom's console script, not DCMTK
        return str(candidate)
    fallback = shutil.which(name, path="/usr/bin:/usr/local/bin")
    return fallback


def make_ct(
    *,
    patient_id: str = "PAT-1",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    rows: int = 8,
    cols: int = 8,
    accession: str = "ACC-1",
    instance_number: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A valid CT Image Storage instance with file meta (tiny pixel data by default)."""
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.InstanceNumber = instance_number
    ds.Rows = rows
    ds.Columns = cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    pixels = (np.arange(rows * cols, dtype=np.int16) + instance_number).reshape(rows, cols)
    ds.PixelData = pixels.tobytes()
    return ds


def write_instances(directory: Path, datasets: Iterable[Dataset]) -> list[Path]:
    """Save datasets as Part 10 files named by SOP Instance UID (which must be file-safe)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _env(nodelay: bool) -> dict[str, str]:
    env = dict(os.environ)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def storescu(
    port: int,
    files: Sequence[Path | str],
    *,
    aec: str,
    aet: str = "STORESCU",
    host: str = "127.0.0.1",
    nodelay: bool = True,
    extra: Sequence[str] = (),
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run DCMTK ``storescu`` (one association) and return the finished process."""
    binary = dcmtk("storescu")
    assert binary is not None, "DCMTK storescu not found"
    cmd = [binary, "-aec", aec, "-aet", aet, *extra, host, str(port), *map(str, files)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=_env(nodelay), check=False
    )


def echoscu(
    port: int,
    *,
    aec: str,
    aet: str = "ECHOSCU",
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run DCMTK ``echoscu`` and return the finished process."""
    binary = dcmtk("echoscu")
    assert binary is not None, "DCMTK echoscu not found"
    cmd = [binary, "-aec", aec, "-aet", aet, *extra, host, str(port)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=_env(True), check=False
    )
