"""A restart does not re-read what others wrote to the ledger after our last record.

The process role stores with each commit where a new owner must start reading the jobs
ledger. Before issue 13's soak that was the end of its own last record, so everything the
submitter and the reclaimer wrote after it (two records per job) was read again at every
start: 8.8 s and +120 MiB at 100,000 jobs. Now the runtime reads the jobs partitions'
ends while its writer is idle, and the commit stores those -- also when its input is idle
and nothing new is committed (the soak's second run: 3.9 s, the submitter's records
written after the processor's last commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from processors.roles import ProcessRole, processors_group
from processors.runtime import decode_positions
from streams.config import load_config
from streams.events import GroupInstance, JobSubmitted, envelope
from streams.kafka import EventPublisher, LogReader, ensure_topics
from tests.helpers.cluster import poll
from tests.helpers.processor import AE, PIPELINES, instance, key_of, write_config
from tests.helpers.waiting import committed_offsets, wait_until

pytestmark = [pytest.mark.kafka]

OTHERS = 25  # records another writer (the submitter) appends after ours


@contextlib.asynccontextmanager
async def running_role(
    bootstrap: str, prefix: str, tmp_path: Path, *, timeout_s: int
) -> AsyncIterator[ProcessRole]:
    """A process role on one-partition topics of ``prefix``, ready; stopped (SIGTERM's
    path: close, final commit) when the block ends."""
    await ensure_topics(bootstrap, {f"{prefix}.instances": 1, f"{prefix}.jobs": 1})
    config = load_config(
        write_config(
            tmp_path / "adapter.yaml", prefix=prefix, storage=tmp_path / "storage",
            partitions=1, pipelines=PIPELINES, adapter_id="proc", timeout_s=timeout_s,
        ),
        env={},
    ).with_kafka(bootstrap)  # fmt: skip
    role = ProcessRole(config)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    try:
        await wait_until(
            lambda: role.started.is_set() and role.runtime.ready_partitions == {0}, "ready"
        )
        yield role
    finally:
        stop.set()
        await task


async def publish_instance(publisher: EventPublisher, prefix: str, now: int) -> int:
    """One instance of a new study; returns its offset."""
    item = instance(patient="PAT-1", study="1.2.3", sop="1.2.3.1", received_at=now)
    env = envelope(item, source="scp", time_ms=now)
    _, offset = await publisher.publish(f"{prefix}.instances", key_of(item), env)
    return offset


async def publish_others(publisher: EventPublisher, prefix: str, now: int) -> None:
    """What a submitter writes to the ledger after the processor's records."""
    files = (GroupInstance("1.2.3.9", "1.2.3", "1.2.3.9", "/st/x.dcm"),)
    for n in range(OTHERS):
        done = JobSubmitted(f"j{n}", "n", AE, "p", "pid", "normal", "/st/p", files, 1)
        await publisher.publish(
            f"{prefix}.jobs", f"{AE}/x", envelope(done, source="sub", time_ms=now)
        )


async def stored_commit(bootstrap: str, prefix: str) -> OffsetAndMetadata:
    """The processor group's one commit, with its metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(processors_group(prefix, AE))
    finally:
        await admin.close()
    [(_, om)] = committed.items()
    return om


async def test_the_commit_lets_the_next_start_skip_other_writers_records(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("tail")
    now = int(time.time() * 1000)
    async with (
        running_role(kafka_bootstrap, prefix, tmp_path, timeout_s=30) as role,
        EventPublisher(kafka_bootstrap) as publisher,
    ):
        # one instance: its group stays open (30 s), so the runtime has an offset to commit
        offset = await publish_instance(publisher, prefix, now)
        await wait_until(lambda: role.runtime.processors[AE].open_groups == 1, "open")
        await publish_others(publisher, prefix, now)
    om = await stored_commit(kafka_bootstrap, prefix)
    assert om.offset == offset  # held by the open group, as always
    assert decode_positions(om.metadata) == {0: OTHERS}  # past the other writer's records


async def test_an_idle_processor_stores_the_ledger_end_with_its_last_commit(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("tail-idle")
    group = processors_group(prefix, AE)
    now = int(time.time() * 1000)
    async with (
        running_role(kafka_bootstrap, prefix, tmp_path, timeout_s=1) as role,
        EventPublisher(kafka_bootstrap) as publisher,
    ):
        offset = await publish_instance(publisher, prefix, now)
        # the group closes (1 s) and its input is committed: nothing is left to commit
        await wait_until(
            lambda: role.runtime.sink.written >= 1 and role.runtime.processors[AE].open_groups == 0,
            "the group is closed",
        )

        async def committed() -> bool:
            found = await committed_offsets(kafka_bootstrap, group)
            return any(value > offset for value in found.values())

        await poll("the input is committed", committed)
        await publish_others(publisher, prefix, now)  # after our last commit
    async with LogReader(kafka_bootstrap) as reader:
        ends = await reader.end_offsets(f"{prefix}.jobs")
    assert ends[0] > OTHERS  # our group.closed, then the others' records
    om = await stored_commit(kafka_bootstrap, prefix)
    assert om.offset > offset
    assert decode_positions(om.metadata) == {0: ends[0]}  # a restart reads none of them
