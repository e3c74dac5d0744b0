"""``dicom-adapter process`` as the real CLI on a real broker: seed Scenario 2, readiness.

Studies A, B and C of one patient arrive in one association; Scenario 2 (groupBy Study
by default, timeout 5 s, priority higher, one breast pipeline) yields three breast jobs,
one per study, each with exactly that study's instances. ``/readyz`` says 503 while the
consumer has no assignment (a second group member holds the rebalance up) and 200 once
partitions are assigned; SIGTERM stops the role with exit code 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from processors.roles import processors_group
from streams.events import RecordKeys
from streams.kafka import EventPublisher, ensure_topics
from tests.helpers.processor import (
    AE,
    PIPELINES,
    instance,
    job_groups,
    poll_readyz,
    publish_instances,
    start_process,
    stop_process,
    write_config,
)
from tests.helpers.waiting import HoldRebalance, free_port, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_scenario_2_three_studies_three_jobs_and_readiness(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances_topic: 3, jobs_topic: 3})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "adapter.yaml", prefix=prefix, storage=tmp_path / "storage")

    # A member of the processors' group that holds the next rebalance up: the process
    # joins the group but gets no assignment until the member lets go.
    holder = HoldRebalance()
    member = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=processors_group(prefix, AE),
        enable_auto_commit=False,
    )
    await member.start()
    member.subscribe([instances_topic], listener=holder)
    proc = None
    try:
        while not holder.assigned.is_set():
            await member.getmany(timeout_ms=100)
        proc = await start_process(
            config, kafka_bootstrap, env={"DICOM_ADAPTER_HTTP__PORT": str(port)}
        )

        def connected(status: int, body: dict[str, object]) -> bool:
            checks = body["checks"]
            assert isinstance(checks, dict)
            return bool(checks.get("process kafka connected", {}).get("ok"))

        status, body = await poll_readyz(url, connected)
        assert status == 503
        assert body["failing"] == ["process partitions assigned"]

        holder.release.set()
        await member.stop()  # leaves the group: the process gets every partition
        status, body = await poll_readyz(url, lambda s, b: s == 200)
        assert body["status"] == "ready"

        now = int(time.time() * 1000)
        studies = {
            study: [
                instance(patient="PAT-1", study=study, sop=f"{study}.{n}", received_at=now + n)
                for n in range(1, 4 + index)
            ]
            for index, study in enumerate(["1.2.3.100", "1.2.3.200", "1.2.3.300"])
        }
        async with EventPublisher(kafka_bootstrap) as publisher:
            for items in studies.values():
                await publish_instances(publisher, instances_topic, items)
        published = int(time.time() * 1000)

        def alive() -> None:
            assert proc is not None and proc.returncode is None, "the process role died"

        records = await wait_for_ledger(
            kafka_bootstrap, jobs_topic, lambda rs: len(job_groups(rs)) >= 3, alive=alive
        )
        async with httpx.AsyncClient() as client:
            scraped = (await client.get(f"{url}/metrics")).text
        code = await stop_process(proc)
        _, raw_err = await proc.communicate()
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await member.stop()

    err = raw_err.decode()
    assert code == 0, err
    assert "Traceback" not in err
    assert "PAT-1" not in err, "PHI in the log"
    groups = job_groups(records)
    assert len(groups) == 3, groups
    by_study = {g.group_key: g for g in groups}
    assert set(by_study) == set(studies)
    for study, items in studies.items():
        group = by_study[study]
        assert group.ae_title == AE and group.group_by == "(0020,000D)"
        assert [i.sop_instance_uid for i in group.instances] == [i.sop_instance_uid for i in items]
        # Group times are log times (the broker's clock), not the senders' stamps.
        assert now - 1000 <= group.first_received_at <= group.last_received_at <= published + 1000
        (job,) = group.jobs
        assert (job.pipeline_name, job.pipeline_id, job.priority) == (
            "breast",
            PIPELINES["breast"],
            "higher",
        )
        assert job.name.startswith("clara-breast-breast-")
    record = next(r for r in records if r.envelope.type == "group.closed")
    assert record.key == RecordKeys()(AE, "PAT-1")
    # All three groups came from one instances partition and went to the same jobs one.
    partitions = {i.partition for g in groups for i in g.inputs}
    assert len(partitions) == 1 and {r.partition for r in records} == partitions
    assert f'dicom_adapter_consumer_lag{{group="{processors_group(prefix, AE)}"' in scraped
    assert f'dicom_adapter_open_groups{{ae_title="{AE}"}}' in scraped
