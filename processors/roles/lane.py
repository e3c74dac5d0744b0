"""One AE title's processor on Kafka: a consumer group of its own, a sink, a runtime.

The lane reads the instances topic, or the AE title's rekeyed topic when its groups
span patients (:mod:`processors.roles.repartition`).

Every AE title is consumed in the consumer group ``<prefix>.processors.<AE title>``:
each of its partitions has exactly one owner among the processes that serve that AE
title, and an AE title nobody here serves is simply not read here -- its instances
reach the processes that serve it, wherever they run and whenever they start (within
the topic's retention), and are never reclaimed by another adapter (issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka.structs import TopicPartition

from processors.base import JobProcessor
from processors.http.readiness import ReadyFlag
from processors.roles.keycheck import KeyCheck
from processors.runtime import LedgerIndex, LedgerSink, ProcessorRuntime
from processors.runtime.ticker import PartitionView
from streams.config import AdapterConfig
from streams.events import RecordKeys
from streams.kafka import KafkaConnection, KafkaSource, Publisher, TopicNames

log = logging.getLogger(__name__)


def processors_group(prefix: str, ae_title: str) -> str:
    """Consumer group of every process serving ``ae_title`` on the bus."""
    return f"{prefix}.processors.{ae_title}"


class Lane:
    """``processor`` of ``ae_title`` fed by its own :class:`KafkaSource`."""

    def __init__(
        self,
        config: AdapterConfig,
        kafka: KafkaConnection,
        names: TopicNames,
        counts: Mapping[str, int],
        ae_title: str,
        *,
        input_topic: str | None = None,
        publisher: Publisher,
        clock: Callable[[], int],
        consumer_options: Mapping[str, Any],
        assigned: ReadyFlag | None,
        keys: RecordKeys,
        check_keys: bool = False,
    ) -> None:
        self.ae_title = ae_title
        self.group_id = processors_group(config.kafka.topic_prefix, ae_title)
        self.client_id = f"{config.adapter_id}-process"
        self.input_topic = input_topic or names.instances
        rekeyed = self.input_topic != names.instances
        self.sink = LedgerSink(
            publisher,
            names.jobs,
            source=config.adapter_id,
            index=LedgerIndex(counts[self.input_topic], counts[names.jobs]),
            clock=clock,
            keys=keys,
            input_topic=self.input_topic if rekeyed else "",
        )
        if rekeyed:  # copies commit in transactions: read those that did
            consumer_options = {**consumer_options, "isolation_level": "read_committed"}
        self.source = KafkaSource(
            kafka,
            [self.input_topic],
            self.group_id,
            client_id=self.client_id,
            max_records=config.processor.batch_max_records,
            commit_interval_s=config.processor.commit_interval_ms / 1000,
            commit_bound=self._commit_bound,
            commit_metadata=self._commit_metadata,
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
            consumer_options=consumer_options,
            throttle=self.sink.throttle,
        )
        if check_keys and not rekeyed:  # one lane per process checks the instances' keys
            # errors are the runtime's to report (a raising default would cut them off)
            self.source.record_batches.subscribe(KeyCheck(keys).batch, lambda _exc: None)
        self._names = names
        self._assigned = assigned
        self._runtime: ProcessorRuntime | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def runtime(self) -> ProcessorRuntime:
        """The runtime (after :meth:`attach`)."""
        if self._runtime is None:
            raise RuntimeError("the lane has no processor yet")
        return self._runtime

    def attach(self, processor: JobProcessor) -> None:
        """Run ``processor`` in this lane (before :meth:`start`)."""
        runtime = ProcessorRuntime(
            {self.ae_title: processor},
            self.sink,
            self.sink.index,
            instances_topic=self.input_topic,
            jobs_topic=self._names.jobs,
            client_id=self.client_id,
            assigned=self._assigned,
        )
        runtime.attach(self.source)
        self._runtime = runtime

    def start_writer(self) -> None:
        """The ledger writer runs before processors start: a processor's ``start`` may
        write (the cache processor re-sends requests a crash left pending)."""
        self._writer = asyncio.create_task(self.sink.run(), name=f"ledger-writer-{self.ae_title}")

    async def start(self) -> None:
        """Join the AE title's consumer group."""
        await self.source.start()

    def partitions(self) -> dict[int, PartitionView]:
        """The owned partitions as the ticker sees them."""
        runtime = self._runtime
        if runtime is None:
            return {}
        processor = runtime.processors[self.ae_title]
        return {
            p: PartitionView(processor.next_due(p), runtime.router.last_instance(p))
            for p in runtime.ready_partitions
        }

    def failure(self) -> BaseException | None:
        """Why the lane stopped, if it did (its runtime failed or its writer stopped)."""
        writer = self._writer
        if writer is not None and writer.done() and not writer.cancelled():
            error = writer.exception()
            if error is not None:
                self.runtime.fail(error)
        return self._runtime.failure if self._runtime is not None else None

    async def close(self) -> None:
        """Stop reading, emit no partial group, write what is queued, commit, leave."""
        if self._runtime is not None:
            await self._runtime.close()
        self.sink.close()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    # The source is built before the runtime: its callbacks forward late.

    async def _on_assigned(self, tps: frozenset[TopicPartition]) -> None:
        await self.runtime.on_assigned(tps)

    async def _on_revoked(self, tps: frozenset[TopicPartition]) -> None:
        await self.runtime.on_revoked(tps)

    def _commit_bound(self, tp: TopicPartition) -> int | None:
        return self.runtime.commit_bound(tp)

    def _commit_metadata(self, tp: TopicPartition, offset: int) -> str:
        return self.runtime.commit_metadata(tp, offset)
