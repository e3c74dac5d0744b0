"""Real DICOM peers to send to: DCMTK ``storescp`` and a recording pynetdicom SCP.

``storescp`` runs as shipped (no ``TCP_NODELAY`` in its environment) and writes each
instance as ``<modality>.<SOPInstanceUID>``; a repeated instance overwrites its file and
is announced on stderr ("file already exists"), which :meth:`StoreScp.overwrites` counts.
:class:`RecordingScp` records every C-STORE it gets and answers the status a test
chooses per SOP Instance UID.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.helpers.dicom import dcmtk


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout_s: float = 20.0) -> None:
    """Return once something accepts TCP connections on ``port``; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port} after {timeout_s} s") from exc
            time.sleep(0.05)  # polling interval, not an assertion


@dataclass
class StoreScp:
    """``with StoreScp(out_dir) as scp: ... scp.port ...`` — DCMTK storescp, as shipped.

    ``extra`` adds options, e.g. ``["+xa"]`` to accept compressed syntaxes too (by
    default storescp takes only the uncompressed ones).
    """

    out_dir: Path
    ae_title: str = "STORESCP"
    extra: Sequence[str] = ()
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def __enter__(self) -> StoreScp:
        binary = dcmtk("storescp")
        assert binary is not None, "DCMTK storescp not found (apt-get install dcmtk)"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.out_dir.with_name(self.out_dir.name + ".log")
        log = self.log_path.open("wb")
        cmd = [binary, "-aet", self.ae_title, "-od", str(self.out_dir), "-dhl", *self.extra]
        self.process = subprocess.Popen([*cmd, str(self.port)], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def kill(self) -> None:
        """SIGKILL the server (a peer that dies mid-association)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stored(self) -> dict[str, str]:
        """SOP Instance UID -> transfer syntax of every file written so far."""
        out = {}
        for path in sorted(self.out_dir.iterdir()):
            ds = dcmread(path, stop_before_pixels=True)
            out[str(ds.SOPInstanceUID)] = str(ds.file_meta.TransferSyntaxUID)
        return out

    def files(self) -> list[Path]:
        """Every file storescp wrote."""
        return sorted(self.out_dir.iterdir())

    def overwrites(self) -> int:
        """How many received instances replaced a file already there (re-sends)."""
        if self.log_path is None or not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count("already exists")


@dataclass
class Received:
    """One C-STORE as the recording SCP saw it."""

    sop_instance_uid: str
    transfer_syntax_uid: str
    status: int


@dataclass
class RecordingScp:
    """A pynetdicom Storage SCP that records every C-STORE and answers ``status_for(uid)``.

    ``sop_classes`` are the storage SOP classes it accepts, with ``transfer_syntaxes``
    (all of them by default); ``associations`` counts the associations it accepted.
    """

    status_for: Callable[[str], int] = lambda _uid: 0x0000
    sop_classes: Sequence[str] = (CTImageStorage,)
    transfer_syntaxes: Sequence[str] = tuple(ALL_TRANSFER_SYNTAXES)
    ae_title: str = "RECORDER"
    received: list[Received] = field(default_factory=list)
    associations: int = 0
    port: int = 0
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> RecordingScp:
        ae = AE(ae_title=self.ae_title)
        for sop_class in self.sop_classes:
            ae.add_supported_context(sop_class, list(self.transfer_syntaxes))
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, self._on_accepted)]
        self._server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self._server.server_address[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_accepted(self, _event: Any) -> None:
        with self._lock:
            self.associations += 1

    def _on_store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        status = self.status_for(uid)
        with self._lock:
            self.received.append(Received(uid, str(event.context.transfer_syntax), status))
        return status

    def uids(self) -> list[str]:
        """SOP Instance UIDs received, in order, repeats included."""
        with self._lock:
            return [r.sop_instance_uid for r in self.received]
