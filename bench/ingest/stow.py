"""STOW-RS ingest: dicomweb-client into our ``scp`` role's STOW-RS route, and into Orthanc's
DICOMweb plugin (Debian package ``orthanc-dicomweb``).

The corpus is read into pydicom data sets before the clock starts; each of ``parallel``
client threads posts its contiguous share with ``DICOMwebClient.store_instances`` in
requests of :data:`BATCH` instances (encoding is the client's, on the clock for both
receivers alike). Verification is the storescu rows': files and events for ours,
``/statistics`` for Orthanc.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from dicomweb_client import DICOMwebClient
from pydicom import dcmread

from bench.ingest.adapter import AdapterScp
from bench.ingest.orthanc import Orthanc
from bench.ingest.receivers import CALLED_AE, ReceiverError
from bench.ingest.sender import SendResult, split
from streams.broker import free_port

#: Instances per STOW-RS request.
BATCH = 50
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))


def dicomweb_plugin() -> Path | None:
    """The Debian package's DICOMweb plugin, if installed."""
    for directory in PLUGIN_DIRS:
        for candidate in sorted(directory.glob("libOrthancDicomWeb.so*")):
            return candidate
    return None


def _wait_http(url: str, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.1)  # readiness poll, not a measurement
    raise ReceiverError(f"{what} did not answer {url} in {timeout_s:g} s")


def stow(
    url: str, files: list[Path], *, parallel: int, headers: dict[str, str] | None = None
) -> SendResult:
    """Post ``files`` to the DICOMweb service at ``url`` from ``parallel`` clients (with
    ``headers`` on every request, e.g. a bearer token)."""
    shares = [[dcmread(p) for p in share] for share in split(files, parallel)]

    def post(datasets: list[Any]) -> str:
        client = DICOMwebClient(url, headers=headers)
        client.set_http_retry_params(retry=False)
        try:
            for i in range(0, len(datasets), BATCH):
                client.store_instances(datasets[i : i + BATCH])
        except Exception as exc:  # reported as the run's problem, not raised
            return f"{type(exc).__name__}: {exc}"
        return ""

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        errors = list(pool.map(post, shares))
    seconds = time.perf_counter() - start
    return SendResult(seconds, tuple(1 if e else 0 for e in errors), tuple(errors))


class AdapterStow(AdapterScp):
    """Our ``scp`` role, loaded over STOW-RS (``/dicomweb/BENCH/studies``)."""

    name = "ours-stow"
    label = "DICOM Stream Adapter STOW-RS"

    def __init__(self, workdir: Path, port: int, *, nodelay: bool, bootstrap: str) -> None:
        super().__init__(workdir, port, nodelay=nodelay, bootstrap=bootstrap)
        self.http_port = free_port()
        self.token = secrets.token_urlsafe(24)

    def prepare(self) -> None:
        super().prepare()
        path = self.workdir / "adapter.yaml"
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        # The API (STOW-RS included) takes requests with a bearer token only (issue 18).
        config["http"] = {
            "host": "127.0.0.1",
            "port": self.http_port,
            "auth": {"tokens": [self.token]},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    @property
    def headers(self) -> dict[str, str]:
        """What every STOW-RS request carries: the bearer token of this run."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def url(self) -> str:
        """The DICOMweb base URL of the bench AE title."""
        return f"http://127.0.0.1:{self.http_port}/dicomweb/{CALLED_AE}"

    def start(self, timeout_s: float = 90.0) -> None:
        super().start(timeout_s)
        _wait_http(f"http://127.0.0.1:{self.http_port}/healthz", "the adapter")


class OrthancStow(Orthanc):
    """Orthanc with its DICOMweb plugin, loaded over STOW-RS (``/dicom-web/studies``)."""

    name = "orthanc-stow"
    label = "Orthanc DICOMweb plugin STOW-RS"

    def prepare(self) -> None:
        super().prepare()
        plugin = dicomweb_plugin()
        if plugin is None:
            raise ReceiverError("the Orthanc DICOMweb plugin is not installed (orthanc-dicomweb)")
        path = self.workdir / "orthanc.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["Plugins"] = [str(plugin)]
        config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @property
    def headers(self) -> dict[str, str]:
        """No credentials: Orthanc's default configuration accepts local requests."""
        return {}

    @property
    def url(self) -> str:
        """The DICOMweb base URL."""
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def start(self, timeout_s: float = 90.0) -> None:
        super().start(timeout_s)
        _wait_http(f"{self.url}/studies", "Orthanc's DICOMweb plugin")
