"""``dicom-adapter config check FILE --kafka``: AE titles on the bus nobody serves (issue 14).

An SCP receives for two AE titles; processes serve only one of them. The check, run as
a user would (the CLI in a subprocess), names the other one -- announced by the SCP's
heartbeat and present in the instances log -- and leaves the served one alone.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.dicom import make_ct, storescu, write_instances
from tests.helpers.processor import poll_readyz
from tests.helpers.waiting import free_port, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

REPO = Path(__file__).resolve().parents[2]
CHECK = (sys.executable, "-m", "processors.cli", "config", "check")


def write_config(path: Path, *, prefix: str, storage: Path, ae_titles: tuple[str, ...]) -> Path:
    storage.mkdir(parents=True, exist_ok=True)
    entries = "".join(
        f"    - ae_title: {ae}\n      processorSettings:\n        pipeline-a: P-{ae}\n"
        for ae in ae_titles
    )
    path.write_text(
        f"adapter_id: bus-check\nstorage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        f"  ae_titles:\n{entries}"
    )
    return path


def check(config: Path, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHECK, str(config), "--no-env", "--kafka", bootstrap],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_config_check_kafka_names_ae_titles_no_processor_serves(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("bus")
    both = write_config(
        tmp_path / "scp.yaml", prefix=prefix, storage=tmp_path / "s", ae_titles=("SERVED", "LONELY")
    )
    served = write_config(
        tmp_path / "proc.yaml", prefix=prefix, storage=tmp_path / "s", ae_titles=("SERVED",)
    )
    cluster = Cluster(kafka_bootstrap, both, tmp_path)
    try:
        scp = await cluster.start("scp", "scp-1", dicom_port=free_port())
        proc = await cluster.start("process", "proc-1", config=served)
        for role in (scp, proc):
            await poll_readyz(role.url, lambda status, _body: status == 200)
        for ae in ("SERVED", "LONELY"):
            files = write_instances(tmp_path / ae, [make_ct(patient_id=f"PAT-{ae}")])
            result = await asyncio.to_thread(storescu, scp.dicom_port, files, aec=ae)
            assert result.returncode == 0, result.stderr

        async def lonely_named() -> bool:
            out = await asyncio.to_thread(check, served, kafka_bootstrap)
            return "warning: AE title LONELY" in out.stderr

        await wait_until(lonely_named, timeout_s=30)
        result = await asyncio.to_thread(check, served, kafka_bootstrap)
        cluster.alive()
    finally:
        await cluster.terminate()
    assert result.returncode == 0, result.stderr
    assert "bus: AE title LONELY: received by scp-1; instances in the log; no processor group" in (
        result.stdout
    )
    assert "bus: AE title SERVED: received by scp-1; instances in the log; 1 live processor(s)" in (
        result.stdout
    )
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: AE")]
    assert len(warnings) == 1 and "LONELY has instances on the bus" in warnings[0]


def test_config_check_kafka_without_an_address_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", prefix="x", storage=tmp_path / "s", ae_titles=("A",))
    result = subprocess.run(
        [*CHECK, str(config), "--no-env", "--kafka"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "config check --kafka: no Kafka address and no embedded broker in " in last
    assert "--kafka HOST:PORT" in last and "KAFKA_BOOTSTRAP_SERVERS" in last
