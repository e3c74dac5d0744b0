"""The ``process`` role: every configured AE title's job processor on Kafka.

Each AE title runs in a :class:`~processors.roles.lane.Lane` of its own (consumer group
``<prefix>.processors.<AE title>``: every partition has one owner among the processes
serving that AE title) and writes ``group.closed`` records to ``<prefix>.jobs``. The
process also keeps the bus clock (docs/processing.md, "Time"): it follows
``<prefix>.sources`` into a :class:`~processors.runtime.clock.BusClock`, says its own
heartbeat there, and writes ``clock.tick`` records to the partitions it owns
(:mod:`processors.roles.busclock`). An AE title whose groups span patients is read
from its rekeyed topic, which the process fills (:mod:`processors.roles.repartition`).
Used by ``dicom-adapter process`` and
``dicom-adapter run`` (:func:`process_role`). This is where the generic runtime
(:mod:`processors.runtime`) meets Kafka, the HTTP app and the configured processors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactivex.scheduler.eventloop import AsyncIOScheduler

from processors.base import JobProcessor
from processors.contracts import ProcessorContext
from processors.groups.api import ops_router
from processors.http.readiness import NotReadyError, Readiness, ReadyFlag
from processors.roles.announce import GroupAnnouncer, owner_name
from processors.roles.busclock import ClockKeeper
from processors.roles.lane import Lane, processors_group
from processors.roles.repartition import Repartitioning, repartition_keys
from processors.roles.shell import Role, RoleContext, Topics
from processors.runtime import (
    ProcessorRoleError,
    ProcessorRuntime,
    build_processors,
    processor_classes,
)
from processors.runtime.collector import tune_for_open_groups
from processors.runtime.ticker import PartitionView
from processors.windows import now_ms
from streams.config import AdapterConfig
from streams.errors import ConfigError
from streams.events import RecordKeys
from streams.kafka import EventPublisher, KafkaConnection, rekeyed_topic_configs, topic_names

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024  # below the broker's default message.max.bytes (1 MB)

__all__ = ["ProcessRole", "check_process_config", "process_role", "processors_group"]


def check_process_config(config: AdapterConfig) -> None:
    """Refuse to process without AE titles: there would be nothing to read."""
    if not config.scp.ae_titles:
        raise ConfigError(
            [
                "scp.ae_titles: empty, so the process role has no job processor; configure "
                "the AE titles this process serves (the same list as the SCP's)"
            ]
        )
    classes = processor_classes(config)
    for index, ae in enumerate(config.scp.ae_titles):
        classes[ae.ae_title].parse_settings(
            ae.ae_title, ae.processor_settings, where=f"scp.ae_titles[{index}]"
        )


class ProcessRole:
    """The ``process`` role as an object: :meth:`run` it until its stop event is set.

    ``runtimes`` (by AE title) are available once :meth:`run` has started the consumers
    (embedding and tests). ``topics`` creates the adapter's topics (the shell's, shared
    by the roles of a process); ``readiness`` gets the checks ``process kafka
    connected`` and ``process partitions assigned`` (every AE title has partitions);
    processors' API routers are mounted on ``app``; ``on_started`` is called once the
    consumers run; ``group_instance_id`` makes this process a static member of every
    group. :meth:`run` raises :class:`ConfigError` for a bad processor configuration and
    :class:`ProcessorRoleError` (or ``BrokerError``) when processing failed; either way
    nothing uncommitted is lost -- a restart replays it.
    """

    def __init__(
        self,
        config: AdapterConfig,
        *,
        topics: Topics | None = None,
        readiness: Readiness | None = None,
        app: FastAPI | None = None,
        on_started: Callable[[], None] | None = None,
        group_instance_id: str | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_process_config(config)
        self.config = config
        self.kafka = KafkaConnection.of(config.kafka)
        self.topics = topics or Topics(config, self.kafka)
        self.readiness = readiness
        self.app = app
        self.on_started = on_started
        self.names = topic_names(config.kafka.topic_prefix)
        self.source_name = f"{config.adapter_id}/process"
        self.group_instance_id = group_instance_id
        self.consumer_options: dict[str, Any] = dict(consumer_options or {})
        self.keeper = ClockKeeper(
            config, self.kafka, self.names, source=self.source_name, owned=self._owned
        )
        self.repartitioning = Repartitioning(
            self.kafka,
            prefix=config.kafka.topic_prefix,
            instances_topic=self.names.instances,
            keys=repartition_keys(config),
            record_keys=RecordKeys.of(config.kafka.record_key_secret()),
            client_id=f"{config.adapter_id}-process",
        )
        self.started = asyncio.Event()
        self.lanes: dict[str, Lane] = {}

    @property
    def runtimes(self) -> dict[str, ProcessorRuntime]:
        """The running runtime of each AE title (after :attr:`started` is set)."""
        return {ae: lane.runtime for ae, lane in self.lanes.items()}

    @property
    def runtime(self) -> ProcessorRuntime:
        """The runtime of the one AE title this process serves (tests, embedding)."""
        (runtime,) = self.runtimes.values()
        return runtime

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully (see the module doc)."""
        config = self.config
        counts = await self.topics()
        repartitioning = self.repartitioning
        rekeyed = await repartitioning.create_topics(
            counts[self.names.instances],
            config.kafka.replication_factor,
            rekeyed_topic_configs(config.kafka),
        )
        counts = {**counts, **rekeyed}
        connected = None
        if self.readiness is not None:
            connected = self.readiness.flag("process kafka connected", "connecting to Kafka")
            self.readiness.add("process partitions assigned", self._all_assigned)
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        # Closed groups are written in bursts (a tick closes many at once): big producer
        # batches cut the round trips per partition.
        publisher = EventPublisher(
            self.kafka,
            client_id=f"{config.adapter_id}-process",
            producer_options={"max_batch_size": PRODUCER_BATCH_BYTES},
        )
        async with publisher:
            self._build_lanes(publisher, counts, scheduler)
            processors = {ae: lane.runtime.processors[ae] for ae, lane in self.lanes.items()}
            for lane in self.lanes.values():
                lane.start_writer()
            done = asyncio.Event()
            repartitioning.start(done)
            helpers = self.keeper.start(publisher, done, repartitioning.gates)
            announcer = GroupAnnouncer(
                lambda: self.lanes, publisher, self.names.groups,
                owner=owner_name(config.adapter_id),
            )  # fmt: skip
            helpers.append(asyncio.create_task(announcer.run(done), name="process-groups"))
            try:
                await _start_processors(config, processors)
                _mount_routers(self.app, processors)
                for lane in self.lanes.values():
                    await lane.start()
                if connected is not None:
                    connected.set()
                log.info(
                    "process role: AE titles %s, %s -> %s, groups %s",
                    ", ".join(self.lanes), self.names.instances, self.names.jobs,
                    ", ".join(lane.group_id for lane in self.lanes.values()),
                )  # fmt: skip
                self.started.set()
                if self.on_started is not None:
                    self.on_started()
                await self._until_stopped(stop)
            finally:
                for lane in self.lanes.values():
                    await lane.close()
                done.set()  # the heartbeat says "stopped"; the clock's readers just end
                for task in helpers[1:]:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                await repartitioning.close()
        copy_failure = repartitioning.failure()
        if copy_failure is not None:
            raise ProcessorRoleError(f"repartitioning failed: {copy_failure}") from copy_failure
        for lane in self.lanes.values():
            failure = lane.failure()
            if failure is not None:
                if isinstance(failure, ProcessorRoleError | ConfigError):
                    raise failure
                raise ProcessorRoleError(str(failure)) from failure
        log.info("process role stopped")

    def _build_lanes(
        self,
        publisher: EventPublisher,
        counts: Mapping[str, int],
        scheduler: AsyncIOScheduler,
    ) -> None:
        options = dict(self.consumer_options)
        keys = RecordKeys.of(self.config.kafka.record_key_secret())
        rekeyed = self.repartitioning.topics
        plain = [ae.ae_title for ae in self.config.scp.ae_titles if ae.ae_title not in rekeyed]
        checker = plain[0] if plain else None
        for ae in self.config.scp.ae_titles:
            if self.group_instance_id:  # static membership: one member id per group
                options["group_instance_id"] = f"{self.group_instance_id}-{ae.ae_title}"
            lane = Lane(
                self.config, self.kafka, self.names, counts, ae.ae_title,
                input_topic=rekeyed.get(ae.ae_title),
                publisher=publisher, clock=lambda: now_ms(scheduler),
                consumer_options=options, assigned=ReadyFlag("waiting for a partition assignment"),
                keys=keys, check_keys=ae.ae_title == checker,
            )  # fmt: skip
            self.lanes[ae.ae_title] = lane
        sinks = {ae: lane.sink for ae, lane in self.lanes.items()}
        built = build_processors(self.config, sinks, scheduler)
        for ae_title, processor in built.items():
            self.lanes[ae_title].attach(processor)

    def _all_assigned(self) -> bool:
        for ae, lane in self.lanes.items():
            flag = lane.runtime.assigned_flag
            if flag is not None and not flag.is_set:
                raise NotReadyError(f"{ae}: waiting for a partition assignment")
        return True

    def _owned(self) -> dict[str, dict[int, PartitionView]]:
        """Every owned partition once per topic, with the earliest due time over the
        lanes reading it."""
        merged: dict[str, dict[int, PartitionView]] = {}
        for lane in self.lanes.values():
            views = merged.setdefault(lane.input_topic, {})
            for p, view in lane.partitions().items():
                seen = views.get(p)
                views[p] = view if seen is None else _earliest(seen, view)
        return merged

    async def _until_stopped(self, stop: asyncio.Event) -> None:
        waits = {asyncio.create_task(stop.wait(), name="process-stop")}
        copying = set(self.repartitioning.tasks)
        for lane in self.lanes.values():
            waits.add(
                asyncio.create_task(lane.runtime.failed.wait(), name=f"failed-{lane.ae_title}")
            )
        try:
            while True:
                finished, _ = await asyncio.wait(
                    waits | copying, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if finished or any(lane.failure() is not None for lane in self.lanes.values()):
                    return
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def _earliest(a: PartitionView, b: PartitionView) -> PartitionView:
    dues = [d for d in (a.next_due, b.next_due) if d is not None]
    lasts = [t for t in (a.last_instance, b.last_instance) if t is not None]
    return PartitionView(min(dues, default=None), max(lasts, default=None))


async def _start_processors(config: AdapterConfig, processors: Mapping[str, JobProcessor]) -> None:
    names = topic_names(config.kafka.topic_prefix)
    context = ProcessorContext(
        storage=Path(config.storage),
        adapter_id=config.adapter_id,
        kafka=KafkaConnection.of(config.kafka),
        instances_topic=names.instances,
        jobs_topic=names.jobs,
        grace_ms=config.processor.grace_ms,
        log_clock=True,
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
    """The ``process`` role for :func:`processors.roles.serve`; ``group_instance_id``
    makes this process a static member of the group (a restart takes its partitions
    back at once instead of after the session timeout; every live process needs its
    own)."""

    async def role(ctx: RoleContext) -> None:
        tune_for_open_groups()  # the windows' hot path: see processors.runtime.collector
        names = topic_names(ctx.config.kafka.topic_prefix)
        ctx.app.include_router(ops_router(ctx.kafka, names))  # GET /groups, /jobs, /ui
        process = ProcessRole(
            ctx.config,
            topics=ctx.topics,
            readiness=ctx.readiness,
            app=ctx.app,
            on_started=ctx.started.set,
            group_instance_id=group_instance_id,
        )
        await process.run(ctx.stop)

    return role


process_role = process_role_with()
"""The ``process`` role (``run`` and ``process``)."""
