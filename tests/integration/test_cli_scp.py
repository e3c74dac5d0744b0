"""``dicom-adapter scp``: runs the SCP role until SIGTERM; bad usage is one line, exit 2."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.dicom import echoscu, make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.waiting import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

CLI = [sys.executable, "-m", "processors.cli"]


def _config(tmp_path: Path, port: int, prefix: str) -> Path:
    path = tmp_path / "adapter.yaml"
    path.write_text(
        f"""
adapter_id: cli-test
storage: {tmp_path / "storage"}
kafka:
  topic_prefix: {prefix}
  partitions: 2
scp:
  host: 127.0.0.1
  port: {port}
  watermark_percent: 100
  reserve_space_gb: 0
  ae_titles:
    - ae_title: CLARA-CT
      processorSettings:
        groupBy: "0008,0050"
        timeout: 5
        pipeline-lung: 8abf244aff7647989d4f6b3987a85759
"""
    )
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env["DICOM_ADAPTER_HTTP__PORT"] = "0"  # no health port needed; never clash on 8080
    return env


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_until_echo_succeeds(port: int, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while echoscu(port, aec="CLARA-CT").returncode != 0:
        assert proc.poll() is None, f"scp exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "scp did not start listening in time"
        time.sleep(0.1)


async def test_scp_command_serves_until_sigterm(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    port = free_port()
    prefix = unique_name("cli")
    config = _config(tmp_path, port, prefix)
    proc = _start([*CLI, "scp", "--config", str(config), "--kafka", kafka_bootstrap])
    try:
        await asyncio.to_thread(_wait_until_echo_succeeds, port, proc, 60)
        files = write_instances(tmp_path / "in", [make_ct(patient_id="P", accession="ACC-1")])
        sent = await asyncio.to_thread(storescu, port, files, aec="CLARA-CT")
        assert sent.returncode == 0, sent.stderr
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=1)
        # The AE title's processor groups by Accession Number: the SCP carries that tag.
        assert [dict(env.data.tags) for _, env in events] == [{"00080050": "ACC-1"}]
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "scp stopped" in stderr


def test_scp_without_kafka_is_a_usage_error(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port(), "x")
    proc = subprocess.run(
        [*CLI, "scp", "--config", str(config)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicom-adapter: error: no Kafka address")


def test_scp_refuses_an_untested_pynetdicom_in_one_line(tmp_path: Path) -> None:
    """The runtime guard of streams/scp/compat.py, seen from the command line: the role
    fails before it opens anything, with one ERROR line that says how to fix it."""
    config = _config(tmp_path, free_port(), "x")
    # The same CLI, with pynetdicom claiming a release outside TESTED_PYNETDICOM.
    as_untested = (
        "import sys, pynetdicom; pynetdicom.__version__ = '3.1.0'; "
        "from processors.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", as_untested, "scp", "--config", str(config)],
        env={**_env(), "DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    assert "pynetdicom 3.1.0 is untested" in errors[0]
    assert "pip install 'pynetdicom>=3.0.4,<3.1'" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "storage").exists()  # refused before anything was opened
