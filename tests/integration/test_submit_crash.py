"""The submitter killed with SIGKILL between the platform's success and its event.

The submitter runs as the real CLI (``python -m processors.cli submit``); the HTTP
platform kills it right after creating the job and before answering. After a restart the
submitter re-sends the same Idempotency-Key (at-least-once HTTP), the platform's key
de-duplication keeps one job, and the ledger shows ``job.submitted`` exactly once per job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.events import GroupInstance, JobSubmitted
from tests.helpers.jobs import group_closed, write_instances
from tests.helpers.platform import PlatformServer
from tests.helpers.submitter import of_type, publish
from tests.helpers.waiting import wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


async def start_submitter(config: Path, bootstrap: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processors.cli", "submit",
        "--config", str(config), "--kafka", bootstrap,
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def existing(instances: list[GroupInstance]) -> int:
    return sum(os.path.exists(i.uri) for i in instances)


async def test_sigkill_after_http_success_submits_once_per_key(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    instances = write_instances(storage, per_series=3)
    victim: dict[str, int] = {}
    killed: list[str] = []

    def kill_on_first_x(key: str) -> None:
        if key == "job-x" and not killed:
            killed.append(key)
            os.kill(victim["pid"], signal.SIGKILL)  # the job exists; the answer never arrives

    with PlatformServer(on_created=kill_on_first_x) as server:
        config = tmp_path / "adapter.yaml"
        config.write_text(
            f"adapter_id: crash-test\nstorage: {storage}\n"
            f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
            f"submitter:\n  kind: http\n  url: {server.url}\n  backoff_initial_s: 0.05\n"
            "  backoff_max_s: 0.2\n"
        )
        first = await start_submitter(config, kafka_bootstrap)
        victim["pid"] = first.pid
        try:
            # immediate job-y goes first and completes; normal job-x kills the submitter
            gc = group_closed(instances, jobs=[("job-y", "immediate"), ("job-x", "normal")])
            await publish(kafka_bootstrap, topic, [("AET1/PAT1", gc)])
            await asyncio.wait_for(first.communicate(), 90)
            code = first.returncode
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        assert code == -signal.SIGKILL and killed == ["job-x"]
        records = await wait_for_ledger(kafka_bootstrap, topic, lambda rs: True)
        submitted = [e.data.job_id for e in of_type(records, "job.submitted")]  # type: ignore[union-attr]
        assert submitted == ["job-y"]  # job-x was created on the platform, not in the ledger
        assert existing(instances) == len(instances)  # a job is unsubmitted: nothing deleted

        second = await start_submitter(config, kafka_bootstrap)
        try:
            records = await wait_for_ledger(
                kafka_bootstrap, topic, lambda rs: bool(of_type(rs, "instances.removed"))
            )
            second.send_signal(signal.SIGTERM)
            _, raw_err = await asyncio.wait_for(second.communicate(), 60)
            code, err = second.returncode, raw_err.decode()
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
        assert code == 0, err
        assert "Traceback" not in err

    keys = server.keys()
    assert keys.count("job-x") == 2  # at-least-once HTTP: the same key was sent again
    assert keys.count("job-y") == 1  # rebuilt from the ledger: never re-sent
    assert sorted(server.created) == ["job-x", "job-y"]  # one platform job per key
    done = [e.data for e in of_type(records, "job.submitted")]
    assert sorted(d.job_id for d in done if isinstance(d, JobSubmitted)) == ["job-x", "job-y"]
    x = next(d for d in done if isinstance(d, JobSubmitted) and d.job_id == "job-x")
    assert x.platform_job_id == server.created["job-x"]  # the replayed answer's id
    assert existing(instances) == 0
