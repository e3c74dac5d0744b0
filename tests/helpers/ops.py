"""An adapter for the operator tests (issue 15): one SCP and N processor replicas as
separate role processes (:class:`tests.helpers.cluster.Cluster`), DCMTK as the sender,
and the real ``dicom-adapter groups`` CLI."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from pydicom.dataset import Dataset

from streams.events import GroupClosed
from streams.kafka import Record
from tests.helpers.cluster import REPO, Cluster, Role, poll
from tests.helpers.dicom import dcmtk, echoscu, storescu, write_instances
from tests.helpers.processor import PIPELINES, poll_readyz
from tests.helpers.waiting import free_port

AE = "CLARA-OPS"
PARTITIONS = 4
TOKEN = "ops-test-token-0123456789abcdef"


def write_config(path: Path, *, prefix: str, storage: Path, settings: str) -> Path:
    """One config for every role: AE ``AE`` with both pipelines and ``settings`` lines
    (``timeout: 60``...; ``groupBy`` defaults to Study); an API token for the HTTP
    routes."""
    storage.mkdir(parents=True, exist_ok=True)
    pipelines = "".join(f"        pipeline-{name}: {pid}\n" for name, pid in PIPELINES.items())
    lines = [line for line in settings.splitlines() if line.strip()]
    if not any(line.startswith("groupBy:") for line in lines):
        lines.insert(0, "groupBy: Study")
    extra = "".join(f"        {line}\n" for line in lines)
    path.write_text(
        "adapter_id: ops\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n"
        "processor:\n  commit_interval_ms: 200\n"
        f"http:\n  host: 127.0.0.1\n  port: 0\n  auth:\n    tokens: [{TOKEN}]\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processorSettings:\n"
        f"{pipelines}{extra}"
    )
    return path


@dataclass
class Adapter:
    """The running roles and how to reach them."""

    cluster: Cluster
    config: Path
    bootstrap: str
    prefix: str
    scp: Role
    processes: list[Role]

    @property
    def jobs_topic(self) -> str:
        return f"{self.prefix}.jobs"

    async def send(self, folder: Path, datasets: Sequence[Dataset]) -> None:
        """One association of DCMTK storescu with ``datasets``."""
        files = write_instances(folder, datasets)
        result = await asyncio.to_thread(storescu, self.scp.dicom_port, files, aec=AE)
        assert result.returncode == 0, result.stderr

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``dicom-adapter groups ARGS --config FILE --kafka ADDR`` (the real CLI)."""
        argv = [sys.executable, "-m", "processors.cli", "groups", *args]
        argv += ["--config", str(self.config), "--kafka", self.bootstrap]
        return subprocess.run(
            argv, check=False, cwd=REPO, capture_output=True, text=True, timeout=60
        )

    async def groups(self, *args: str) -> list[dict[str, object]]:
        """``groups list --json ARGS`` as objects."""
        done = await asyncio.to_thread(self.cli, "list", "--json", "--show-phi", *args)
        assert done.returncode == 0, done.stderr
        return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def running_adapter(
    bootstrap: str, tmp: Path, prefix: str, *, settings: str, processes: int = 2
) -> AsyncIterator[Adapter]:
    """Start an SCP and ``processes`` processor replicas; stop them all at the end."""
    if dcmtk("storescu") is None or dcmtk("echoscu") is None:
        pytest.fail("DCMTK storescu/echoscu are required (apt-get install -y dcmtk)")
    config = write_config(
        tmp / "adapter.yaml", prefix=prefix, storage=tmp / "storage", settings=settings
    )
    cluster = Cluster(bootstrap, config, tmp)
    try:
        procs = [await cluster.start("process", f"proc-{n}") for n in range(processes)]
        scp = await cluster.start("scp", "scp-1", dicom_port=free_port())
        for proc in procs:
            await poll_readyz(proc.url, lambda status, body: status == 200)

        async def echoes() -> bool:
            scp.alive()
            return (await asyncio.to_thread(echoscu, scp.dicom_port, aec=AE)).returncode == 0

        await poll("scp C-ECHO", echoes, timeout_s=60)
        yield Adapter(cluster, config, bootstrap, prefix, scp, procs)
    finally:
        await cluster.kill_all()


def closed_groups(records: Sequence[Record]) -> list[GroupClosed]:
    """``group.closed`` records with jobs."""
    return [
        r.envelope.data
        for r in records
        if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.jobs
    ]
