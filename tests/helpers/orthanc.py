"""A real Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) for tests.

Each server gets free loopback ports, a fresh storage folder and a config that loads
the DICOMweb plugin; it is ready once its REST API answers ``/system`` and
``/dicom-web/studies`` (polled with a deadline, no fixed sleeps). Optional HTTP users
turn on Basic authentication; an optional Lua ``ReceivedInstanceFilter`` makes it
refuse chosen instances (over C-STORE and STOW-RS alike).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.peers import free_port, wait_for_port

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
AE_TITLE = "ORTHANC"


def orthanc_binary() -> str | None:
    """The Orthanc server binary, if installed."""
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    return found


def dicomweb_plugin() -> Path | None:
    """The DICOMweb plugin shared object of the Debian package, if installed."""
    for directory in PLUGIN_DIRS:
        for candidate in sorted(directory.glob("libOrthancDicomWeb.so*")):
            if candidate.is_file():
                return candidate
    return None


def refuse_lua(sop_instance_uids: set[str]) -> str:
    """A ``ReceivedInstanceFilter`` refusing the given SOP Instance UIDs (any origin)."""
    listed = ", ".join(f'["{uid}"] = true' for uid in sorted(sop_instance_uids))
    return (
        f"local refused = {{ {listed} }}\n"
        "function ReceivedInstanceFilter(dicom, origin, info)\n"
        "  return not refused[dicom.SOPInstanceUID]\n"
        "end\n"
    )


@dataclass
class OrthancServer:
    """``with OrthancServer(tmp_path) as orthanc: ... orthanc.dicom_port ...``"""

    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    lua: str = ""
    ae_title: str = AE_TITLE
    extra: dict[str, Any] = field(default_factory=dict)  # more config, e.g. DicomWeb.Servers
    start_timeout_s: float = 60.0
    dicom_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Base URL of the DICOMweb API (``/dicom-web``)."""
        return f"{self.url}/dicom-web"

    def __enter__(self) -> OrthancServer:
        binary, plugin = orthanc_binary(), dicomweb_plugin()
        assert binary is not None, "Orthanc is not installed (apt-get install orthanc)"
        assert plugin is not None, "the DICOMweb plugin is not installed (orthanc-dicomweb)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dicom_port, self.http_port = free_port(), free_port()
        config: dict[str, Any] = {
            "Name": "export-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [str(plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "ConcurrentJobs": 1,
        }
        for key, value in self.extra.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        if self.lua:
            script = self.workdir / "filter.lua"
            script.write_text(self.lua, encoding="utf-8")
            config["LuaScripts"] = [str(script)]
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        log = (self.workdir / "orthanc.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "--no-jobs", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited at start:\n{self.log_tail()}")
            try:
                if self.get("/system").status_code == 200 and (
                    self.get("/dicom-web/studies").status_code == 200
                ):
                    wait_for_port(self.dicom_port, timeout_s=deadline - time.monotonic())
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling interval, not an assertion
        raise AssertionError(f"Orthanc not ready in {self.start_timeout_s} s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        """The end of Orthanc's log (for failure messages)."""
        path = self.workdir / "orthanc.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str) -> httpx.Response:
        """GET on the REST API (with the first registered user, if any)."""
        auth = next(iter(self.users.items()), None)
        return httpx.get(f"{self.url}{path}", auth=auth, timeout=10)

    def post(self, path: str, body: Any) -> httpx.Response:
        """POST on the REST API: bytes as they are, anything else as JSON."""
        auth = next(iter(self.users.items()), None)
        if isinstance(body, bytes):
            return httpx.post(f"{self.url}{path}", content=body, auth=auth, timeout=60)
        return httpx.post(f"{self.url}{path}", json=body, auth=auth, timeout=60)

    def sop_instance_uids(self) -> list[str]:
        """SOP Instance UIDs of every stored instance, one entry per stored instance."""
        response = self.get("/instances?expand")
        response.raise_for_status()
        return [item["MainDicomTags"]["SOPInstanceUID"] for item in response.json()]

    def transfer_syntax_of(self, sop_instance_uid: str) -> str:
        """Transfer syntax an instance is stored in (``/instances/{id}/metadata``)."""
        found = httpx.post(
            f"{self.url}/tools/lookup",
            content=sop_instance_uid,
            auth=next(iter(self.users.items()), None),
            timeout=10,
        ).json()
        ident = next(item["ID"] for item in found if item["Type"] == "Instance")
        return str(self.get(f"/instances/{ident}/metadata/TransferSyntax").text)
