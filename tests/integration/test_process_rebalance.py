"""Scale-out: two ``dicom-adapter process`` CLIs in one group, one SIGKILLed mid-stream
and a third started -- rebalances under load still give every job exactly once.

Dynamic membership (no ``--group-instance-id``): the dead member's partitions move only
after its session timeout, while the survivor's are revoked and re-assigned twice, so
open groups are dropped and re-formed from the log by whoever owns them next.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.kafka import ensure_topics
from tests.helpers.processor import (
    PIPELINES,
    STUDIES,
    all_in_jobs,
    assert_exactly_once,
    job_groups,
    plan,
    poll_readyz,
    settle_after,
    start_process,
    stop_process,
    stream,
    write_config,
)
from tests.helpers.waiting import free_port, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

PARTITIONS = 4


async def test_kill_one_of_two_processors_and_start_another(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    rng = random.Random(7)
    prefix = unique_name("p")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances_topic: PARTITIONS, jobs_topic: PARTITIONS})
    config = write_config(
        tmp_path / "adapter.yaml",
        prefix=prefix,
        storage=tmp_path / "storage",
        partitions=PARTITIONS,
        pipelines=PIPELINES,
        commit_interval_ms=200,
    )
    planned = plan(rng)
    logs = [tmp_path / f"process-{n}.log" for n in range(3)]
    ports = [free_port() for _ in range(3)]

    async def start(n: int) -> asyncio.subprocess.Process:
        env = {"DICOM_ADAPTER_HTTP__PORT": str(ports[n])}
        return await start_process(config, kafka_bootstrap, env=env, log=logs[n])

    procs = [await start(0), await start(1)]
    try:
        for n in (0, 1):  # both members have their partitions before the traffic starts
            await poll_readyz(f"http://127.0.0.1:{ports[n]}", lambda status, body: status == 200)
        traffic = asyncio.create_task(stream(kafka_bootstrap, instances_topic, planned))
        await asyncio.sleep(rng.uniform(2.0, 4.0))  # mid-stream, not an assertion
        procs[0].send_signal(signal.SIGKILL)
        assert await procs[0].wait() == -signal.SIGKILL
        procs.append(await start(2))
        newest = await traffic

        def alive() -> None:
            for n in (1, 2):
                assert procs[n].returncode is None, logs[n].read_text()[-3000:]

        await wait_for_ledger(
            kafka_bootstrap, jobs_topic, all_in_jobs(planned), timeout_s=90, alive=alive
        )
        await settle_after(newest, alive)
        codes = [await stop_process(procs[1]), await stop_process(procs[2])]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for n, code in ((1, codes[0]), (2, codes[1])):
        text = logs[n].read_text()
        assert code == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]

    records = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
    assert_exactly_once(records, planned)
    assert len(job_groups(records)) == STUDIES
    writers = {r.envelope.source for r in records}
    assert writers == {"process-test"}  # one config: every replica shares the adapter id
