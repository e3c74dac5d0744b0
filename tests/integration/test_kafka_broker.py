"""The Apache Kafka launcher: starts, serves metadata, keeps data across restarts."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.broker import KafkaBroker, describe_cluster, free_port
from streams.errors import BrokerError
from streams.events import Envelope, InstancesRemoved, decode, envelope
from streams.kafka import EventPublisher, ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def removed(n: int) -> Envelope:
    return envelope(
        InstancesRemoved(sop_instance_uids=(f"1.2.{n}",), reason="submitted"),
        source="test",
        time_ms=1_700_000_000_000 + n,
        event_id=f"removed-{n}",
    )


async def event_ids(bootstrap: str, topic: str) -> list[str]:
    """Ids of every event on both partitions of ``topic``, sorted."""
    values: list[bytes] = []
    for partition in (0, 1):
        values += await read_partition(bootstrap, TopicPartition(topic, partition))
    return sorted(decode(v).id for v in values)


async def read_partition(bootstrap: str, tp: TopicPartition) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [m.value for m in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


async def test_broker_restarts_on_its_data_with_topics_and_events(
    kafka_jars: Path, tmp_path: Path
) -> None:
    data = tmp_path / "kafka"
    topic = "restart.instances"
    expected = ["removed-0", "removed-1", "removed-2"]
    broker = KafkaBroker(data, libs_dir=kafka_jars)
    async with broker:
        assert broker.running
        cluster = await describe_cluster(broker.bootstrap_servers)
        assert [b["port"] for b in cluster["brokers"]] == [broker.port]
        assert broker.version == "4.1.1" and broker.description == "Apache Kafka 4.1.1 (KRaft)"
        first_address, first_cluster = broker.bootstrap_servers, broker.cluster_id
        await ensure_topics(broker.bootstrap_servers, {topic: 2})
        async with EventPublisher(broker.bootstrap_servers) as publisher:
            await publisher.publish_many(topic, [(f"AE/P{n}", removed(n)) for n in range(3)])
        assert await event_ids(broker.bootstrap_servers, topic) == expected
    assert not broker.running
    assert first_cluster is not None and (data / "kafka-logs" / "meta.properties").is_file()

    async with KafkaBroker(data, libs_dir=kafka_jars) as again:
        assert again.cluster_id == first_cluster, "storage must not be formatted again"
        assert again.bootstrap_servers == first_address, "a free previous port is reused"
        counts = await ensure_topics(again.bootstrap_servers, {topic: 2})
        assert counts == {topic: 2}
        assert await event_ids(again.bootstrap_servers, topic) == expected


async def test_a_broker_that_dies_while_starting_reports_its_log(
    kafka_jars: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = KafkaBroker(tmp_path / "kafka", port=port, libs_dir=kafka_jars)
        with pytest.raises(BrokerError) as caught:
            await broker.start()
    message = str(caught.value)
    assert "exited with code" in message and "while starting" in message
    assert "Address already in use" in message or "bind" in message.lower()
    assert not broker.running


def test_sync_context_manager_and_stop(kafka_jars: Path, tmp_path: Path) -> None:
    port = free_port()
    with KafkaBroker(tmp_path / "kafka", port=port, libs_dir=kafka_jars) as broker:
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"
        pid = broker.pid
        assert pid is not None
    assert not broker.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
