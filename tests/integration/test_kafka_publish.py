"""Topics and the publisher on a real broker: explicit creation, acks, ordering."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.errors import BrokerError
from streams.events import Envelope, JobFailed, decode, envelope
from streams.kafka import EventPublisher, ensure_topics

pytestmark = pytest.mark.kafka


def failed(n: int) -> Envelope:
    return envelope(
        JobFailed(job_id=f"job-{n}", attempt=n, error="platform said 503", will_retry=True),
        source="test",
        time_ms=1_700_000_000_000 + n,
        event_id=f"event-{n}",
    )


async def read_all(
    bootstrap: str, topic: str, partitions: int
) -> list[tuple[int, int, str, Envelope]]:
    """Every record of ``topic`` as (partition, offset, key, envelope), group-less."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, int, str, Envelope]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                out += [(tp.partition, m.offset, m.key.decode(), decode(m.value)) for m in messages]
        return sorted(out, key=lambda r: (r[0], r[1]))
    finally:
        await consumer.stop()


async def test_publish_returns_only_after_the_broker_acked(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("jobs")
    assert await ensure_topics(kafka_bootstrap, {topic: 3}) == {topic: 3}
    async with EventPublisher(kafka_bootstrap) as publisher:
        assert publisher.idempotent, "Apache Kafka supports idempotent producers"
        first = await publisher.publish(topic, "CLARA-CT/P1", failed(1))
        second = await publisher.publish(topic, "CLARA-CT/P1", failed(2))
    assert second == (first[0], first[1] + 1), "same key: same partition, next offset"
    records = await read_all(kafka_bootstrap, topic, 3)
    assert [(p, o, k) for p, o, k, _ in records] == [
        (first[0], first[1], "CLARA-CT/P1"),
        (second[0], second[1], "CLARA-CT/P1"),
    ]
    assert [env for *_, env in records] == [failed(1), failed(2)]


async def test_publish_many_keeps_order_per_key(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("jobs")
    await ensure_topics(kafka_bootstrap, {topic: 4})
    items = [(f"AE/P{n % 2}", failed(n)) for n in range(20)]
    async with EventPublisher(kafka_bootstrap) as publisher:
        placed = await publisher.publish_many(topic, items)
    assert len(placed) == 20
    by_key: dict[str, list[tuple[int, int]]] = {}
    for (key, _), where in zip(items, placed, strict=True):
        by_key.setdefault(key, []).append(where)
    for positions in by_key.values():
        assert len({p for p, _ in positions}) == 1
        offsets = [o for _, o in positions]
        assert offsets == sorted(offsets)
    stored = {(p, o): env for p, o, _, env in await read_all(kafka_bootstrap, topic, 4)}
    assert [stored[w] for w in placed] == [env for _, env in items]


async def test_ensure_topics_is_idempotent_and_never_changes_partitions(
    kafka_bootstrap: str, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = unique_name("a"), unique_name("b")
    assert await ensure_topics(kafka_bootstrap, {a: 2, b: 1}) == {a: 2, b: 1}
    caplog.set_level(logging.WARNING, logger="streams.kafka.topics")
    assert await ensure_topics(kafka_bootstrap, {a: 5, b: 1}) == {a: 2, b: 1}
    assert f"topic {a} has 2 partitions, configured 5" in caplog.text


async def test_publishing_to_a_missing_topic_fails_instead_of_auto_creating(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("missing")
    async with EventPublisher(kafka_bootstrap, request_timeout_ms=2000) as publisher:
        with pytest.raises(BrokerError, match=topic):
            await publisher.publish(topic, "AE/P1", failed(1))


async def test_an_unreachable_broker_is_a_broker_error(unique_name: Callable[[str], str]) -> None:
    from streams.broker import free_port

    publisher = EventPublisher(f"127.0.0.1:{free_port()}")
    with pytest.raises(BrokerError, match="cannot reach Kafka"):
        await publisher.start()
