"""Orthanc (Debian package) as a receiver: fresh storage and index per run.

The configuration is written by the bench (defaults otherwise, as the Debian package
ships them: 4 DICOM threads, ``SyncStorageArea: true``, max PDU 16384); the HTTP port
serves only ``/statistics`` for the stored-instance count. ``OverwriteInstances`` is
false by default, so a re-send would be acknowledged but not stored: each run starts
Orthanc on an empty folder (reference pitfall 6).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from bench.ingest.corpus import Corpus
from bench.ingest.receivers import CALLED_AE, Receiver, Verification, expect

ORTHANC = "/usr/sbin/Orthanc"


def orthanc_installed() -> bool:
    """True when the Debian package's server binary is present."""
    return Path(ORTHANC).is_file() or shutil.which("Orthanc") is not None


class Orthanc(Receiver):
    """``Orthanc config.json`` with DICOM on ``port`` and HTTP on ``http_port``."""

    name = "orthanc"
    label = "Orthanc"

    def __init__(self, workdir: Path, port: int, *, nodelay: bool, http_port: int) -> None:
        super().__init__(workdir, port, nodelay=nodelay)
        self.http_port = http_port

    def prepare(self) -> None:
        config = {
            "Name": "bench-ingest",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": CALLED_AE,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [],
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def command(self) -> list[str]:
        binary = ORTHANC if Path(ORTHANC).is_file() else (shutil.which("Orthanc") or ORTHANC)
        return [binary, "--no-jobs", str(self.workdir / "orthanc.json")]

    def statistics(self) -> dict[str, object]:
        """Orthanc's ``/statistics``."""
        url = f"http://127.0.0.1:{self.http_port}/statistics"
        with urllib.request.urlopen(url, timeout=10) as response:
            loaded = json.loads(response.read())
        return loaded if isinstance(loaded, dict) else {}

    def verify(self, corpus: Corpus) -> Verification:
        n = int(str(self.statistics().get("CountInstances", 0)))
        return Verification(n, problems=expect(n, len(corpus.files), "instances"))
