"""The consumer → Observable bridge on a real broker: offsets, commits, resume, progress."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.events import Envelope, InstanceReceived, encode, envelope
from streams.kafka import BatchEnd, EventPublisher, KafkaSource, Record, ensure_topics

pytestmark = pytest.mark.kafka

WAIT_S = 30.0


def received(n: int, patient: str = "P1") -> Envelope:
    data = InstanceReceived(
        called_ae="CLARA-CT",
        calling_ae="MODALITY1",
        calling_host="127.0.0.1",
        association_id="assoc-1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=f"1.2.826.0.1.{n}",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient,
        study_instance_uid="1.2.826.0.2",
        series_instance_uid="1.2.826.0.3",
        received_at=1_700_000_000_000 + n,
        uri=f"file:///storage/{n}.dcm",
        size=100 + n,
    )
    return envelope(data, source="test", time_ms=1_700_000_000_000 + n)


async def publish(bootstrap: str, topic: str, numbers: range) -> list[tuple[int, int]]:
    async with EventPublisher(bootstrap) as publisher:
        return await publisher.publish_many(
            topic, [(f"CLARA-CT/P{n % 3}", received(n)) for n in numbers]
        )


async def group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return {tp: om.offset for tp, om in found.items()}
    finally:
        await admin.close()


async def test_produce_observe_commit_restart_resumes_at_committed_offset(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("instances"), unique_name("group")
    tp = TopicPartition(topic, 0)
    await ensure_topics(kafka_bootstrap, {topic: 1})
    placed = await publish(kafka_bootstrap, topic, range(10))
    assert placed == [(0, n) for n in range(10)]

    seen: list[int] = []
    all_read = asyncio.Event()
    needed: dict[TopicPartition, int] = {}  # what the subscriber still needs
    source = KafkaSource(
        kafka_bootstrap, [topic], group, commit_interval_s=None, commit_bound=needed.get
    )
    async with source:

        def on_record(record: Record) -> None:
            seen.append(record.offset)
            if record.offset == 4:  # an open group starts here and stays open
                needed[record.tp] = record.offset

        def on_batch(batch: BatchEnd) -> None:
            if batch.all_caught_up and len(seen) >= 10:
                all_read.set()

        source.records.subscribe(on_record)
        source.batches.subscribe(on_batch)
        await asyncio.wait_for(all_read.wait(), WAIT_S)
        assert await source.commit(metadata="jobs[0]@42") == {tp: 4}
        stored = await source.committed([tp])
        assert (stored[tp].offset, stored[tp].metadata) == (4, "jobs[0]@42")
    assert seen == list(range(10))
    assert await group_offsets(kafka_bootstrap, group) == {tp: 4}, "stop() passed a held offset"

    await publish(kafka_bootstrap, topic, range(10, 12))
    resumed: list[Record] = []
    caught_up = asyncio.Event()
    async with KafkaSource(kafka_bootstrap, [topic], group, commit_interval_s=None) as again:
        again.records.subscribe(resumed.append)
        again.batches.subscribe(
            lambda b: caught_up.set() if b.all_caught_up and len(resumed) >= 8 else None
        )
        await asyncio.wait_for(caught_up.wait(), WAIT_S)
    assert [r.offset for r in resumed] == list(range(4, 12))
    first = resumed[0]
    assert isinstance(first.envelope.data, InstanceReceived)
    assert first.envelope.data.sop_instance_uid == "1.2.826.0.1.4"
    assert first.key == "CLARA-CT/P1"
    # Nothing held any more: stopping committed past the last record.
    assert await group_offsets(kafka_bootstrap, group) == {tp: 12}


async def test_caught_up_flag_follows_position_and_highwater(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("instances")
    tp = TopicPartition(topic, 0)
    await ensure_topics(kafka_bootstrap, {topic: 1})
    await publish(kafka_bootstrap, topic, range(9))

    progress = []
    done = asyncio.Event()
    source = KafkaSource(kafka_bootstrap, [topic], unique_name("group"), max_records=2)
    async with source:

        def on_batch(batch: BatchEnd) -> None:
            entry = batch.progress(tp)
            if batch.records and entry is not None:
                progress.append(entry)
                if entry.position is not None and entry.position >= 10:
                    done.set()

        source.batches.subscribe(on_batch)
        while not progress or not progress[-1].caught_up:
            await asyncio.wait_for(_next_batch(source), WAIT_S)
        backlog = list(progress)
        await publish(kafka_bootstrap, topic, range(9, 10))
        await asyncio.wait_for(done.wait(), WAIT_S)

    assert [p.position for p in backlog] == [2, 4, 6, 8, 9]
    assert [p.caught_up for p in backlog] == [False, False, False, False, True]
    assert {p.highwater for p in backlog} == {9}
    live = progress[-1]
    assert (live.position, live.highwater, live.caught_up) == (10, 10, True)


async def _next_batch(source: KafkaSource) -> BatchEnd:
    future: asyncio.Future[BatchEnd] = asyncio.get_running_loop().create_future()
    subscription = source.batches.subscribe(
        lambda b: future.set_result(b) if not future.done() else None
    )
    try:
        return await future
    finally:
        subscription.dispose()


async def test_undecodable_records_are_skipped_counted_and_committable(
    kafka_bootstrap: str, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("instances")
    tp = TopicPartition(topic, 0)
    await ensure_topics(kafka_bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in (
            encode(received(0)),
            b"PATIENT-SECRET-99 is not JSON",
            encode(received(2)),
            b'{"type": "patient.secret", "version": 1, "id": "x", "time": 0, "source": "s"}',
            encode(received(4)),
        ):
            await producer.send_and_wait(topic, value, key=b"CLARA-CT/P1")
    finally:
        await producer.stop()

    caplog.set_level(logging.WARNING, logger="streams.kafka.observable")
    offsets: list[int] = []
    finished = asyncio.Event()
    async with KafkaSource(kafka_bootstrap, [topic], unique_name("group")) as source:
        source.records.subscribe(lambda r: offsets.append(r.offset))
        source.batches.subscribe(
            lambda b: finished.set() if b.all_caught_up and len(offsets) >= 3 else None
        )
        await asyncio.wait_for(finished.wait(), WAIT_S)
        assert source.skipped == 2
        assert await source.commit() == {tp: 5}
    assert offsets == [0, 2, 4]
    skipped = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING, logging.WARNING]
    assert "@1" in skipped[0].getMessage() and "@3" in skipped[1].getMessage()
    assert "PATIENT-SECRET" not in caplog.text


async def test_revoked_partitions_are_committed_before_another_member_takes_them(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("instances"), unique_name("group")
    await ensure_topics(kafka_bootstrap, {topic: 2})
    placed = await publish(kafka_bootstrap, topic, range(12))
    ends: dict[TopicPartition, int] = {}
    for partition, offset in placed:
        tp = TopicPartition(topic, partition)
        ends[tp] = max(ends.get(tp, 0), offset + 1)
    assert len(ends) == 2, "keys should spread over both partitions"

    fast = {"heartbeat_interval_ms": 200, "session_timeout_ms": 6000}
    revoked: list[frozenset[TopicPartition]] = []
    assigned_b: list[frozenset[TopicPartition]] = []
    read_a: list[int] = []
    read_b: list[Record] = []
    first_done = asyncio.Event()
    b_ready = asyncio.Event()
    a = KafkaSource(
        kafka_bootstrap,
        [topic],
        group,
        commit_interval_s=None,  # only the revocation may commit
        on_revoked=revoked.append,
        consumer_options=fast,
    )
    async with a:
        a.records.subscribe(lambda r: read_a.append(r.offset))
        a.batches.subscribe(
            lambda b: first_done.set() if b.all_caught_up and len(read_a) >= 12 else None
        )
        await asyncio.wait_for(first_done.wait(), WAIT_S)

        def on_assigned(tps: frozenset[TopicPartition]) -> None:
            assigned_b.append(tps)

        b = KafkaSource(
            kafka_bootstrap, [topic], group, on_assigned=on_assigned, consumer_options=fast
        )
        async with b:
            b.records.subscribe(read_b.append)
            b.batches.subscribe(
                lambda batch: b_ready.set() if batch.all_caught_up and assigned_b[-1:] else None
            )
            await asyncio.wait_for(b_ready.wait(), WAIT_S)
            assert revoked and revoked[0] == frozenset(ends)
            assert any(assigned_b), "the second member got no partition"
            committed = await group_offsets(kafka_bootstrap, group)
            assert committed == ends
            assert read_b == [], "the new owner re-read records the old one had finished"
