"""The bus clock of a process: its heartbeat, the sources it follows, the ticks it writes.

A ``process`` role keeps the bus clock of docs/processing.md ("Time"): it follows
``<prefix>.sources`` into a :class:`~processors.runtime.clock.BusClock`, says its own
heartbeat there (a process owes nothing, but a silent one is seen), and writes
``clock.tick`` records to the partitions its lanes own
(:class:`~processors.runtime.ticker.Ticker`), gated for rekeyed topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from aiokafka.structs import TopicPartition

from processors.runtime.clock import BusClock
from processors.runtime.ticker import Gate, PartitionView, Ticker, fold_heartbeats
from streams.config import AdapterConfig
from streams.events import SourceHeartbeat
from streams.kafka import KafkaConnection, LogReader, Publisher, TopicNames
from streams.kafka.heartbeat import HeartbeatSender
from streams.kafka.reader import BEGINNING

log = logging.getLogger(__name__)

SOURCES_RETRY_S = 1.0  # back-off while the broker recovers


class ClockKeeper:
    """Runs the heartbeat, the sources follower and the ticker of one process."""

    def __init__(
        self,
        config: AdapterConfig,
        kafka: KafkaConnection,
        names: TopicNames,
        *,
        source: str,
        owned: Callable[[], Mapping[str, Mapping[int, PartitionView]]],
    ) -> None:
        processing = config.processor
        self.clock = BusClock(
            idle_timeout_ms=int(processing.source_idle_timeout_s * 1000),
            grace_ms=processing.grace_ms,
        )
        self.config = config
        self.kafka = kafka
        self.names = names
        self.source = source
        self.owned = owned

    def start(
        self, publisher: Publisher, done: asyncio.Event, gates: Mapping[str, Gate]
    ) -> list[asyncio.Task[None]]:
        """Start the tasks; the heartbeat comes first (it ends by itself once ``done``
        is set, saying "stopped"), the others are cancelled by the caller."""
        processing = self.config.processor
        heartbeat = HeartbeatSender(
            source=self.source,
            topic=self.names.sources,
            publisher=lambda: publisher,
            clock=lambda: int(time.time() * 1000),
            interval_ms=self.config.scp.heartbeat_interval_ms,
        )
        ticker = Ticker(
            self.clock,
            publisher,
            sources_topic=self.names.sources,
            writer=self.source,
            owned=self.owned,
            gates=gates,
            keepalive_ms=processing.tick_keepalive_ms,
            horizon_ms=int(processing.tick_horizon_s * 1000),
        )
        return [
            asyncio.create_task(heartbeat.run(done), name="process-heartbeat"),
            asyncio.create_task(self._follow_sources(done), name="process-sources"),
            asyncio.create_task(ticker.run(done), name="process-ticker"),
        ]

    async def _follow_sources(self, done: asyncio.Event) -> None:
        """Fold every heartbeat of ``<prefix>.sources`` into the bus clock."""
        topic = self.names.sources
        while not done.is_set():
            try:
                async with LogReader(self.kafka, client_id=f"{self.source}-sources") as reader:
                    starts = {
                        TopicPartition(topic, p): BEGINNING for p in await reader.partitions(topic)
                    }
                    async for batch in reader.batches(starts, follow=True):
                        fold_heartbeats(
                            self.clock,
                            (
                                (r.envelope.data, r.timestamp)
                                for r in batch
                                if isinstance(r.envelope.data, SourceHeartbeat)
                            ),
                        )
                        if done.is_set():
                            return
            except Exception as exc:  # the broker came and went: read again
                log.info("reading %s again after: %s", topic, exc)
                await asyncio.sleep(SOURCES_RETRY_S)
