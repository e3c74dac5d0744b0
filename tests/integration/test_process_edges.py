"""The process role's edges, in-process on a real broker (one partition, so order is total).

* Instances no job is made of -- an AE title without a processor, a blank group key --
  become removal requests carrying their input, written once: a replay skips them.
* A superseded copy of an instance is reclaimed with its group, right after it.
* A processor that raises stops the role with an error; nothing at or after the failed
  instance is committed, so a restart replays it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError

from processors.aetitle import AeTitleJobProcessor
from processors.roles import ProcessRole, processors_group
from processors.runtime import ProcessorRoleError
from streams.config import AdapterConfig, load_config
from streams.events import InputOffset, InstanceReceived, RecordKeys, envelope
from streams.kafka import EventPublisher, KafkaSource, ensure_topics
from tests.helpers.processor import AE, group_records, instance, key_of, write_config
from tests.helpers.waiting import committed_offsets, wait_for_ledger, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets by partition number (one topic)."""
    return {tp.partition: o for tp, o in (await committed_offsets(bootstrap, group)).items()}


async def one_partition(
    bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, timeout_s: int = 5
) -> tuple[str, str, AdapterConfig]:
    """Fresh instances and jobs topics of one partition each, and the config using them."""
    prefix = unique_name("p")
    instances_topic, jobs_topic = f"{prefix}.instances", f"{prefix}.jobs"
    await ensure_topics(bootstrap, {instances_topic: 1, jobs_topic: 1})
    path = write_config(
        tmp_path / "a.yaml", prefix=prefix, storage=tmp_path, partitions=1, timeout_s=timeout_s
    )
    return instances_topic, jobs_topic, load_config(path, env={})


async def publish_all(bootstrap: str, topic: str, items: list[InstanceReceived]) -> list[int]:
    async with EventPublisher(bootstrap) as publisher:
        out = []
        for item in items:
            env = envelope(item, source="scp", time_ms=item.received_at)
            out.append((await publisher.publish(topic, key_of(item), env))[1])
        return out


async def test_ignored_instances_are_reclaimed_once_across_a_replay(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A long timeout keeps the first group open all along.
    instances_topic, jobs_topic, config = await one_partition(
        kafka_bootstrap, unique_name, tmp_path, timeout_s=600
    )
    now = int(time.time() * 1000)
    items = [
        instance(patient="P1", study="1.2.3", sop="1.2.3.1", received_at=now),
        instance(patient="P2", study="1.2.4", sop="1.2.4.1", received_at=now, ae="OTHER-AE"),
        instance(patient="P3", study="", sop="1.2.5.1", received_at=now),
    ]
    offsets = await publish_all(kafka_bootstrap, instances_topic, items)

    def removals(records: list) -> list:  # type: ignore[type-arg]
        return [g for _, g in group_records(records) if not g.jobs]

    for run in range(2):  # the second run replays everything after the open group's input
        role = ProcessRole(config.with_kafka(kafka_bootstrap))
        stop = asyncio.Event()
        task = asyncio.create_task(role.run(stop))
        try:
            await wait_until(role.started.is_set, "started")
            processor = role.runtime.processors[AE]
            assert isinstance(processor, AeTitleJobProcessor)
            if run == 0:
                await wait_for_ledger(
                    kafka_bootstrap, jobs_topic, lambda rs: len(removals(rs)) == 1
                )
            else:  # every input was read again: the open group re-formed, removals covered

                def replayed(p: AeTitleJobProcessor = processor) -> bool:
                    return p.window.open_groups == 1 and p.counters.covered == 1

                await wait_until(replayed, "replayed")
            assert role.runtime.router.unclaimed == 1  # OTHER-AE's: left alone
        finally:
            stop.set()
            await task
        group = processors_group(config.kafka.topic_prefix, AE)
        assert await committed(kafka_bootstrap, group) == {0: offsets[0]}

    records = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: True)
    (blank,) = removals(records)
    assert len(group_records(records)) == 1, "a removal was written twice or a group emitted"
    assert (blank.ae_title, blank.reason) == (AE, "missing-group-key")
    assert blank.inputs == (InputOffset(0, offsets[2]),)
    assert blank.processor == "AE Title Job Processor"
    # nothing of OTHER-AE's was touched
    assert [r.key for r in records] == [RecordKeys()(AE, "P3")]


async def test_a_failing_processor_stops_the_role_without_committing_past_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    instances_topic = f"{prefix}.instances"
    await ensure_topics(kafka_bootstrap, {instances_topic: 1, f"{prefix}.jobs": 1})
    path = write_config(
        tmp_path / "a.yaml",
        prefix=prefix,
        storage=tmp_path,
        partitions=1,
        processor="tests.helpers.processor:ExplodingProcessor",
        commit_interval_ms=50,
    )
    config = load_config(path, env={})
    past = int(time.time() * 1000) - 60_000
    items = [
        instance(patient="P1", study="1.2.3", sop="1.2.3.1", received_at=past),
        instance(patient="P1", study="1.2.4", sop="boom", received_at=past + 1),
        instance(patient="P1", study="1.2.5", sop="1.2.5.1", received_at=past + 2),
    ]
    offsets = await publish_all(kafka_bootstrap, instances_topic, items)
    role = ProcessRole(config.with_kafka(kafka_bootstrap))
    with pytest.raises(ProcessorRoleError, match="cannot handle this instance"):
        await asyncio.wait_for(role.run(asyncio.Event()), 60)
    assert role.runtime.failure is not None
    done = await committed(kafka_bootstrap, processors_group(config.kafka.topic_prefix, AE))
    assert done.get(0, 0) <= offsets[1], "committed past the instance that failed"


async def test_a_superseded_copy_is_reclaimed_right_after_its_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    instances_topic, jobs_topic, config = await one_partition(
        kafka_bootstrap, unique_name, tmp_path
    )
    past = int(time.time() * 1000) - 60_000  # closes as soon as the partition is caught up
    first = instance(patient="P1", study="1.2.3", sop="1.2.3.1", received_at=past)
    again = replace(first, uri="/storage/again/1.2.3.1.dcm", received_at=past + 10)
    other = instance(patient="P1", study="1.2.3", sop="1.2.3.2", received_at=past + 20)
    await publish_all(kafka_bootstrap, instances_topic, [first, again, other])
    role = ProcessRole(config.with_kafka(kafka_bootstrap))
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    try:
        records = await wait_for_ledger(
            kafka_bootstrap, jobs_topic, lambda rs: len(group_records(rs)) >= 2
        )
    finally:
        stop.set()
        await task
    (group_at, group), (removal_at, removal) = group_records(records)
    assert [i.uri for i in group.instances] == [again.uri, other.uri]  # last copy wins
    assert len(group.jobs) == 1 and len(group.inputs) == 3
    assert (removal.reason, removal.jobs, removal.inputs) == ("duplicate", (), ())
    assert [i.uri for i in removal.instances] == [first.uri]
    assert removal.last_received_at == group.last_received_at  # a later copy is kept
    assert removal_at.key == group_at.key == RecordKeys()(AE, "P1")
    assert (removal_at.partition, removal_at.offset) == (group_at.partition, group_at.offset + 1)


async def test_republished_copy_after_its_group_closed_opens_no_second_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Found by the chaos suite (seed 2): an SCP re-published an event (same envelope id)
    after a broker pause; the copy arrived after its group had closed and became a second
    group, so one C-STORE was in two jobs per pipeline. Copies are now dropped."""
    instances_topic, jobs_topic, config = await one_partition(
        kafka_bootstrap, unique_name, tmp_path
    )
    past = int(time.time() * 1000) - 60_000  # closes as soon as the partition is caught up
    original = instance(patient="P1", study="1.2.3", sop="1.2.3.1", received_at=past)
    sentinel = instance(patient="P1", study="1.2.9", sop="1.2.9.1", received_at=past)
    env = envelope(original, source="scp", time_ms=past)
    role = ProcessRole(config.with_kafka(kafka_bootstrap))
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    try:
        await wait_until(role.started.is_set, "started")
        async with EventPublisher(kafka_bootstrap) as publisher:
            await publisher.publish(instances_topic, key_of(original), env)
            await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: len(rs) == 1)
            await publisher.publish(instances_topic, key_of(original), env)  # the same id
            copy = envelope(sentinel, source="scp", time_ms=past)
            await publisher.publish(instances_topic, key_of(sentinel), copy)
        # The sentinel comes after the copy on the one partition: once its group is
        # written, the copy was read too.
        records = await wait_for_ledger(
            kafka_bootstrap,
            jobs_topic,
            lambda rs: any(g.group_key == "1.2.9" for _, g in group_records(rs)),
        )
        assert role.runtime.router.duplicates == 1
    finally:
        stop.set()
        await task
    groups = [g for _, g in group_records(records)]
    assert sorted(g.group_key for g in groups) == ["1.2.3", "1.2.9"], "the copy became a group"


async def test_ledger_rebuild_retries_when_the_group_coordinator_is_not_available(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos suite (seed 1009): a processor assigned its partitions while the
    broker came back from a pause got GroupCoordinatorNotAvailable reading its committed
    offsets, and stopped its role. The fault is injected into the real source's first
    two calls; the role must retry, become ready and form the group."""
    instances_topic, jobs_topic, config = await one_partition(
        kafka_bootstrap, unique_name, tmp_path
    )
    real = KafkaSource.committed
    failures = [GroupCoordinatorNotAvailableError(), GroupCoordinatorNotAvailableError()]

    async def flaky(self: KafkaSource, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(KafkaSource, "committed", flaky)
    past = int(time.time() * 1000) - 60_000
    await publish_all(
        kafka_bootstrap,
        instances_topic,
        [instance(patient="P1", study="1.2.3", sop="1.2.3.1", received_at=past)],
    )
    role = ProcessRole(config.with_kafka(kafka_bootstrap))
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    try:
        records = await wait_for_ledger(kafka_bootstrap, jobs_topic, lambda rs: len(rs) == 1)
        assert not failures, "the fault was not injected"
        assert role.runtime.failure is None
    finally:
        stop.set()
        await task
    assert [g.group_key for _, g in group_records(records)] == ["1.2.3"]
