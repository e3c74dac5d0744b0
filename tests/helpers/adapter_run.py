"""A real ``dicom-adapter run`` (SCP, processors, submitter, reclaimer) as a subprocess.

Ready when its SCP answers DCMTK ``echoscu``; stopped with SIGTERM, and the stop must be
clean (exit 0, no traceback in its log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from helpers.dicom import echoscu, storescu, write_instances
from helpers.waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningAdapter:
    """What a test needs of the running adapter."""

    prefix: str
    port: int
    storage: Path
    ae_title: str
    log: Path

    @property
    def jobs_topic(self) -> str:
        return f"{self.prefix}.jobs"

    def send(self, folder: Path, datasets: list[Dataset]) -> list[Path]:
        """Write ``datasets`` to ``folder`` and send them with ``storescu`` (one association)."""
        files = write_instances(folder, datasets)
        result = storescu(self.port, files, aec=self.ae_title)
        assert result.returncode == 0, result.stderr
        return files


def adapter_yaml(
    storage: Path, prefix: str, port: int, ae_title: str, extra: str, *, timeout_s: int = 5
) -> str:
    """A config for one AE title with a ``timeout_s`` window; ``extra`` is appended as is."""
    return (
        "adapter_id: retention-test\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "http:\n  port: 0\n"
        f"scp:\n  host: 127.0.0.1\n  port: {port}\n  watermark_percent: 100\n"
        "  reserve_space_gb: 0\n"
        f"  ae_titles:\n    - ae_title: {ae_title}\n      processorSettings:\n"
        f"        timeout: {timeout_s}\n"
        "        pipeline-lung: 8abf244aff7647989d4f6b3987a85759\n" + extra
    )


@contextmanager
def running_adapter(
    tmp_path: Path,
    bootstrap: str,
    prefix: str,
    extra: str = "",
    *,
    ae_title: str = "RETAIN",
    timeout_s: int = 5,
) -> Iterator[RunningAdapter]:
    """Start ``dicom-adapter run`` with :func:`adapter_yaml`; stop it cleanly at the end."""
    port = free_port()
    storage = tmp_path / "storage"
    config = tmp_path / "adapter.yaml"
    config.write_text(adapter_yaml(storage, prefix, port, ae_title, extra, timeout_s=timeout_s))
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "run", "--config", str(config),
             "--kafka", bootstrap],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return echoscu(port, aec=ae_title).returncode == 0

        wait_for(ready, "the adapter answers C-ECHO", timeout_s=60)
        yield RunningAdapter(prefix, port, storage, ae_title, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
