"""Revocation and graceful shutdown in-process, two processor roles in one group.

Windows close only by ``clock.tick`` records (the log clock, docs/processing.md "Time"),
and an instance's time is its record's log time, so the test stamps its records itself
(the topics are ``CreateTime``): every instance lies minutes ahead of the wall clock, out
of reach of the processes' own ticks, and the test moves the clock with ticks of its own.

A owns all four partitions with eight open groups. B joins: A's partitions are revoked
and its open groups dropped WITHOUT a ``group.closed``; the groups of partitions that
moved to B are re-formed by B from the log (A committed only up to their oldest input).
Then, per partition, a "clock" instance a minute later and a tick between the studies'
deadlines and the clock instance's: every study closes by event time, each by its
partition's owner, exactly once, and the clock instances' own groups stay open. Stopping
both emits nothing for them, and the commit stops at each partition's clock instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from processors.aetitle import AeTitleJobProcessor
from processors.roles import ProcessRole, processors_group
from processors.runtime import decode_positions
from streams.config import load_config
from streams.events import ClockTick, Envelope, encode, envelope
from streams.kafka import ensure_topics
from tests.helpers.processor import (
    AE,
    PIPELINES,
    group_records,
    instance,
    job_groups,
    key_of,
    write_config,
)
from tests.helpers.waiting import wait_for_ledger, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
FAST = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}
TIMEOUT_S = 30
AHEAD_MS = 5 * 60_000  # ahead of the wall clock, below the broker's limit for CreateTime (1 h)


async def publish_at(
    producer: AIOKafkaProducer,
    topic: str,
    key: str,
    env: Envelope,
    *,
    partition: int | None = None,
) -> tuple[int, int]:
    """Write ``env`` with its own time as the record's (log) time; ``(partition, offset)``."""
    meta = await producer.send_and_wait(
        topic, encode(env), key=key.encode(), partition=partition, timestamp_ms=env.time
    )
    return meta.partition, meta.offset


def window(role: ProcessRole) -> AeTitleJobProcessor:
    processor = role.runtime.processors[AE]
    assert isinstance(processor, AeTitleJobProcessor)
    return processor


async def test_revoked_groups_are_dropped_and_reformed_by_the_new_owner(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {instances_topic: PARTITIONS, jobs_topic: PARTITIONS})
    configs = {
        name: load_config(
            write_config(
                tmp_path / f"{name}.yaml",
                prefix=prefix,
                storage=tmp_path / "storage",
                partitions=PARTITIONS,
                pipelines=PIPELINES,
                adapter_id=name,
                timeout_s=TIMEOUT_S,
            ),
            env={},
        )
        for name in ("proc-a", "proc-b")
    }
    roles = {
        n: ProcessRole(c.with_kafka(kafka_bootstrap), consumer_options=FAST)
        for n, c in configs.items()
    }
    stops = {n: asyncio.Event() for n in roles}
    tasks: dict[str, asyncio.Task[None]] = {}
    every = frozenset(range(PARTITIONS))
    future = int(time.time() * 1000) + AHEAD_MS  # no tick of the processes reaches it
    studies = {
        f"1.2.3.{n}": [
            instance(
                patient=f"PAT-{n}", study=f"1.2.3.{n}", sop=f"1.2.3.{n}.{i}", received_at=future + i
            )
            for i in range(3)
        ]
        for n in range(8)
    }
    try:
        a = roles["proc-a"]
        tasks["proc-a"] = asyncio.create_task(a.run(stops["proc-a"]))
        await wait_until(
            lambda: a.started.is_set() and a.runtime.ready_partitions == every, "A owns all"
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            placed: dict[str, int] = {}
            for study, items in studies.items():
                for item in items:
                    env = envelope(item, source="scp", time_ms=item.received_at)
                    placed[study], _ = await publish_at(
                        producer, instances_topic, key_of(item), env
                    )
            assert len(set(placed.values())) > 1, "studies should spread over partitions"
            await wait_until(
                lambda: window(a).window.open_groups == len(studies), "A has the groups"
            )

            b = roles["proc-b"]
            tasks["proc-b"] = asyncio.create_task(b.run(stops["proc-b"]))

            def split() -> bool:
                if not b.started.is_set():
                    return False
                mine_a, mine_b = a.runtime.ready_partitions, b.runtime.ready_partitions
                return bool(mine_a) and bool(mine_b) and mine_a | mine_b == every

            await wait_until(split, "the partitions are split between A and B")
            mine_b = b.runtime.ready_partitions
            moved = {s for s, p in placed.items() if p in mine_b}
            assert moved, "no open group moved to B"
            # Eager rebalancing: A dropped every group and re-forms those it kept.
            await wait_until(
                lambda: (
                    window(b).window.open_groups == len(moved)
                    and window(a).window.open_groups == len(studies) - len(moved)
                ),
                "the groups re-formed by their new owners",
            )
            assert set(window(a).window.held_offsets()) <= set(a.runtime.ready_partitions)
            written = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
            assert group_records(written) == [], "a revoked group was emitted"

            # Per partition: an instance a minute later (its group stays open), then a
            # tick past every study's deadline but before the clock instance's.
            clocks = {}
            tick_at = future + (TIMEOUT_S + 5) * 1000
            for partition in range(PARTITIONS):
                item = instance(
                    patient=f"CLOCK-{partition}",
                    study=f"9.9.{partition}",
                    sop=f"9.9.{partition}.0",
                    received_at=future + 60_000,
                )
                env = envelope(item, source="scp", time_ms=item.received_at)
                _, clocks[partition] = await publish_at(
                    producer, instances_topic, key_of(item), env, partition=partition
                )
                tick = envelope(ClockTick(tick_at, "test"), source="test", time_ms=tick_at)
                await publish_at(producer, instances_topic, "clock", tick, partition=partition)
        finally:
            await producer.stop()

        await wait_for_ledger(
            kafka_bootstrap, jobs_topic, lambda rs: len(job_groups(rs)) >= len(studies)
        )
    finally:
        for stop in stops.values():
            stop.set()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert [r for r in results if r is not None] == [], results

    final = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
    closed = [(r.partition, r.envelope.source, g.group_key) for r, g in group_records(final)]
    assert len(closed) == len(studies), f"a clock instance's group was emitted: {closed}"
    owner = {p: ("proc-b" if p in mine_b else "proc-a") for p in every}
    seen = []
    for record, group in group_records(final):
        assert group.jobs and record.envelope.source == owner[group.inputs[0].partition]
        assert sorted(i.sop_instance_uid for i in group.instances) == sorted(
            i.sop_instance_uid for i in studies[group.group_key]
        )
        seen.append(group.group_key)
    assert sorted(seen) == sorted(studies)
    assert len({j.job_id for g in job_groups(final) for j in g.jobs}) == len(studies) * 2

    # The last commits stopped at each partition's clock instance: its group is open.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(processors_group(prefix, AE))
    finally:
        await admin.close()
    assert {tp.partition: om.offset for tp, om in committed.items()} == clocks
    for tp, om in committed.items():
        positions = decode_positions(om.metadata)
        assert positions is not None and set(positions) == {tp.partition}
