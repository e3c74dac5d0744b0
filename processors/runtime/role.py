"""The ``process`` role: every configured AE title's job processor on Kafka.

Consumes ``<prefix>.instances`` in the consumer group ``<prefix>.processors`` (shared by
every process replica on the bus, so each partition -- and so each group -- has one
owner) and writes ``group.closed`` records to ``<prefix>.jobs``. Used by
``dicom-adapter process`` and ``dicom-adapter run`` (:func:`process_role`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.structs import TopicPartition
from reactivex.scheduler.eventloop import AsyncIOScheduler

from processors.aetitle.settings import parse_settings, partitioning_problem
from processors.base import JobProcessor, ProcessorContext
from processors.http.readiness import Readiness
from processors.runtime.build import build_processors
from processors.runtime.holds import PartitionHolds
from processors.runtime.ledger_index import LedgerIndex
from processors.runtime.runtime import ProcessorRoleError, ProcessorRuntime
from processors.runtime.sink import LedgerSink
from processors.windows.operator import now_ms
from streams.config import AdapterConfig
from streams.errors import ConfigError
from streams.kafka import EventPublisher, KafkaSource, TopicNames, ensure_topics, topic_names

if TYPE_CHECKING:
    from fastapi import FastAPI

    from processors.app import Role, RoleContext

log = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024  # below the broker's default message.max.bytes (1 MB)


def processors_group(prefix: str) -> str:
    """Consumer group of every job-processor process on the bus."""
    return f"{prefix}.processors"


def check_process_config(config: AdapterConfig) -> None:
    """Refuse to process without AE titles (every instance would be reclaimed), or with
    a groupBy that the partitioning would split (see :func:`partitioning_problem`)."""
    if not config.scp.ae_titles:
        raise ConfigError(
            [
                "scp.ae_titles: empty, so the process role has no job processor and would "
                "reclaim every instance; configure the AE titles (the same list as the SCP's)"
            ]
        )
    problems = []
    for index, ae in enumerate(config.scp.ae_titles):
        if ae.processor != "aetitle":
            continue
        where = f"scp.ae_titles[{index}]"
        settings, _ = parse_settings(ae.ae_title, ae.processor_settings, where=where)
        problem = partitioning_problem(where, ae.ae_title, settings, config.kafka.partitions)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)


class ProcessRole:
    """The ``process`` role as an object: :meth:`run` it until its stop event is set.

    ``runtime`` is available once :meth:`run` has started the consumer (embedding and
    tests); :func:`run_process_role` is the one-call form. See :func:`run_process_role`
    for the arguments.
    """

    def __init__(
        self,
        config: AdapterConfig,
        bootstrap: str,
        *,
        readiness: Readiness | None = None,
        app: FastAPI | None = None,
        on_started: Callable[[], None] | None = None,
        group_instance_id: str | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_process_config(config)
        self.config = config
        self.bootstrap = bootstrap
        self.readiness = readiness
        self.app = app
        self.on_started = on_started
        self.names = topic_names(config.kafka.topic_prefix)
        self.group_id = processors_group(config.kafka.topic_prefix)
        self.client_id = f"{config.adapter_id}-process"
        self.consumer_options: dict[str, Any] = dict(consumer_options or {})
        if group_instance_id:
            self.consumer_options["group_instance_id"] = group_instance_id
        self.started = asyncio.Event()
        self._runtime: ProcessorRuntime | None = None
        self._sink: LedgerSink | None = None

    @property
    def runtime(self) -> ProcessorRuntime:
        """The running :class:`ProcessorRuntime` (after :attr:`started` is set)."""
        if self._runtime is None:
            raise RuntimeError("the process role has not started")
        return self._runtime

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully (see the module doc)."""
        config, names = self.config, self.names
        counts = await ensure_topics(
            self.bootstrap,
            {names.instances: config.kafka.partitions, names.jobs: config.kafka.partitions},
            config.kafka.replication_factor,
        )
        connected = assigned = None
        if self.readiness is not None:
            connected = self.readiness.flag("process kafka connected", "connecting to Kafka")
            assigned = self.readiness.flag(
                "process partitions assigned", "waiting for a partition assignment"
            )
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        # Closed groups are written in bursts (a sweep closes many at once): big
        # producer batches cut the round trips per partition.
        publisher = EventPublisher(
            self.bootstrap,
            client_id=self.client_id,
            producer_options={"max_batch_size": PRODUCER_BATCH_BYTES},
        )
        async with publisher:
            source = KafkaSource(
                self.bootstrap,
                [names.instances],
                self.group_id,
                client_id=self.client_id,
                max_records=config.processor.batch_max_records,
                commit_interval_s=config.processor.commit_interval_ms / 1000,
                commit_metadata=self._commit_metadata,
                on_assigned=self._on_assigned,
                on_revoked=self._on_revoked,
                consumer_options=self.consumer_options,
                throttle=self._throttle,
            )
            holds = PartitionHolds(source.commits, names.instances)
            index = LedgerIndex(counts[names.instances], counts[names.jobs])
            sink = LedgerSink(
                publisher,
                names.jobs,
                source=config.adapter_id,
                holds=holds,
                index=index,
                clock=lambda: now_ms(scheduler),
            )
            processors = build_processors(config, sink, scheduler)
            runtime = ProcessorRuntime(
                processors,
                sink,
                index,
                holds,
                bootstrap_servers=self.bootstrap,
                jobs_topic=names.jobs,
                client_id=self.client_id,
                assigned=assigned,
            )
            runtime.attach(source)
            self._sink, self._runtime = sink, runtime
            # The writer runs before processors start: a processor's start() may write
            # (the cache processor re-sends requests a crash left pending).
            writer = asyncio.create_task(sink.run(), name="process-ledger-writer")
            try:
                await _start_processors(config, self.bootstrap, processors, names)
                _mount_routers(self.app, processors)
                await source.start()
                if connected is not None:
                    connected.set()
                log.info(
                    "process role: AE titles %s, %s -> %s, group %s",
                    ", ".join(processors), names.instances, names.jobs, self.group_id,
                )  # fmt: skip
                self.started.set()
                if self.on_started is not None:
                    self.on_started()
                await _until_stopped(stop, runtime, writer)
            finally:
                await runtime.close()
                sink.close()
                with contextlib.suppress(Exception):
                    await writer
        if runtime.failure is not None:
            failure = runtime.failure
            if isinstance(failure, ProcessorRoleError | ConfigError):
                raise failure
            raise ProcessorRoleError(str(failure)) from failure
        log.info("process role stopped")

    # The source is built before the runtime: its callbacks forward late.

    async def _on_assigned(self, tps: frozenset[TopicPartition]) -> None:
        await self.runtime.on_assigned(tps)

    async def _on_revoked(self, tps: frozenset[TopicPartition]) -> None:
        await self.runtime.on_revoked(tps)

    def _commit_metadata(self, tp: TopicPartition, offset: int) -> str:
        return self.runtime.commit_metadata(tp, offset)

    async def _throttle(self) -> None:
        if self._sink is not None:
            await self._sink.throttle()


async def run_process_role(
    config: AdapterConfig,
    bootstrap: str,
    stop: asyncio.Event,
    *,
    readiness: Readiness | None = None,
    app: FastAPI | None = None,
    on_started: Callable[[], None] | None = None,
    group_instance_id: str | None = None,
    consumer_options: Mapping[str, Any] | None = None,
) -> None:
    """Run the job processors until ``stop`` is set, then shut down gracefully.

    Registers the readiness flags ``process kafka connected`` and ``process partitions
    assigned`` on ``readiness``, mounts processors' API routers on ``app``, calls
    ``on_started`` once the consumer runs. ``group_instance_id`` makes this process a
    static member of the group (a restart takes its partitions back at once instead of
    after the session timeout; every live process needs its own). Raises
    :class:`ConfigError` for a bad processor configuration and
    :class:`ProcessorRoleError` (or ``BrokerError``) when processing failed; either way
    nothing uncommitted is lost -- a restart replays it.
    """
    role = ProcessRole(
        config,
        bootstrap,
        readiness=readiness,
        app=app,
        on_started=on_started,
        group_instance_id=group_instance_id,
        consumer_options=consumer_options,
    )
    await role.run(stop)


async def _until_stopped(
    stop: asyncio.Event, runtime: ProcessorRuntime, writer: asyncio.Task[None]
) -> None:
    waits = {
        asyncio.create_task(stop.wait(), name="process-stop"),
        asyncio.create_task(runtime.failed.wait(), name="process-failed"),
    }
    try:
        await asyncio.wait({*waits, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    if writer.done() and not writer.cancelled() and writer.exception() is not None:
        runtime.fail(writer.exception() or RuntimeError("ledger writer stopped"))


async def _start_processors(
    config: AdapterConfig, bootstrap: str, processors: Mapping[str, JobProcessor], names: TopicNames
) -> None:
    context = ProcessorContext(
        storage=Path(config.storage),
        adapter_id=config.adapter_id,
        bootstrap_servers=bootstrap,
        instances_topic=names.instances,
        jobs_topic=names.jobs,
    )
    for processor in processors.values():
        await processor.start(context)


def _mount_routers(app: FastAPI | None, processors: Mapping[str, JobProcessor]) -> None:
    if app is None:
        return
    by_class: dict[type[JobProcessor], dict[str, JobProcessor]] = {}
    for ae_title, processor in processors.items():
        by_class.setdefault(type(processor), {})[ae_title] = processor
    for cls, mine in by_class.items():
        router = cls.api_router(mine)
        if router is not None:
            app.include_router(router)


def process_role_with(*, group_instance_id: str | None = None) -> Role:
    """A ``processors.app`` role running the job processors (see :func:`process_role`)."""

    async def role(ctx: RoleContext) -> None:
        await run_process_role(
            ctx.config,
            ctx.bootstrap,
            ctx.stop,
            readiness=ctx.readiness,
            app=ctx.app,
            on_started=ctx.started.set,
            group_instance_id=group_instance_id,
        )

    return role


async def process_role(ctx: RoleContext) -> None:
    """The ``process`` role for :func:`processors.app.serve` (``run`` and ``process``)."""
    await process_role_with()(ctx)
