"""Exactly-once jobs across SIGKILL: the issue's real-broker acceptance test (DESIGN.md §4).

30 studies (3-5 instances each, interleaved, stamped at publish time like the SCP does)
stream into ``<prefix>.instances`` over ~11 s while the processor -- the real CLI,
``python -m processors.cli process`` -- is killed with SIGKILL at seeded random moments
and restarted each time. Afterwards every instance is in exactly one job per pipeline,
every study is exactly one group (windows are a function of the log, so a replay forms
the same groups), and no job id appears twice among the ``group.closed`` records.

One seed runs with fewer jobs partitions than instances partitions, so the commit
metadata holds a map of jobs-partition positions instead of one position.
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
    settle_after,
    start_process,
    stop_process,
    stream,
    write_config,
)
from tests.helpers.waiting import wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.chaos]

KILLS = 3


@pytest.mark.parametrize(("seed", "jobs_partitions"), [(11, 3), (22, 2), (33, 3)])
async def test_sigkill_at_random_moments_yields_every_job_exactly_once(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    seed: int,
    jobs_partitions: int,
) -> None:
    rng = random.Random(seed)
    prefix = unique_name("p")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances_topic: 3, jobs_topic: jobs_partitions})
    config = write_config(
        tmp_path / "adapter.yaml",
        prefix=prefix,
        storage=tmp_path / "storage",
        pipelines=PIPELINES,
        commit_interval_ms=200,
    )
    log = tmp_path / "process.log"
    planned = plan(rng)
    member = f"{prefix}-processor"  # static membership: a restart takes the partitions back

    proc = await start_process(config, kafka_bootstrap, group_instance_id=member, log=log)
    killed: list[int] = []
    try:
        traffic = asyncio.create_task(stream(kafka_bootstrap, instances_topic, planned))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(1.0, 4.5))  # a random moment, not an assertion
            proc.send_signal(signal.SIGKILL)
            killed.append(await proc.wait())
            proc = await start_process(config, kafka_bootstrap, group_instance_id=member, log=log)
        newest = await traffic

        def alive() -> None:
            assert proc.returncode is None, f"the processor died:\n{log.read_text()[-3000:]}"

        await wait_for_ledger(
            kafka_bootstrap, jobs_topic, all_in_jobs(planned), timeout_s=90, alive=alive
        )
        await settle_after(newest, alive)
        code = await stop_process(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert killed == [-signal.SIGKILL] * KILLS
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

    records = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
    assert_exactly_once(records, planned)
    assert len(job_groups(records)) == STUDIES
