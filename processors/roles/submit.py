"""The ``submit`` role: submitter and reclaimer wired to Kafka (also used by ``run``).

Both follow ``<prefix>.jobs`` in their own consumer groups — ``<prefix>.submitter`` and
``<prefix>.reclaimer``, shared by every adapter on the bus so that each job has exactly
one owner — and write with one acks=all publisher. Each resumes an assigned partition
from its group's committed offset, which never passes the oldest record of work still to
do, so start-up reads the open work, not the history (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from processors.http.readiness import ReadyFlag
from processors.reclaim import OrphanSweeper, ReclaimService
from processors.roles.shell import Role, RoleContext
from processors.submit import RetryPolicy, SubmitService, make_platform
from streams.config import AdapterConfig
from streams.errors import AdapterError
from streams.events import Envelope, RecordKeys
from streams.kafka import EventPublisher, KafkaConnection, LogFollower, LogHandler, topic_names

log = logging.getLogger(__name__)

_Part = Callable[[asyncio.Event], Awaitable[None]]
"""A part of a role: runs until the stop event is set."""


class AssignmentFlag:
    """A :class:`~streams.kafka.LogHandler` that passes everything on to ``handler`` and keeps
    ``flag`` set while the follower holds partitions (``/readyz``: assigned)."""

    def __init__(self, handler: LogHandler, flag: ReadyFlag) -> None:
        self.handler = handler
        self.flag = flag
        self._held: set[int] = set()

    def assigned(self, partitions: frozenset[int]) -> None:
        """Pass on; the flag is set once any partition is held."""
        self.handler.assigned(partitions)
        self._held |= partitions
        if self._held:
            self.flag.set()

    async def revoked(self, partitions: frozenset[int]) -> None:
        """Pass on; the flag is cleared when no partition is left."""
        self._held -= partitions
        if not self._held:
            self.flag.clear("partitions revoked: rebalancing")
        await self.handler.revoked(partitions)

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        """Pass on."""
        self.handler.record(partition, offset, key, env)

    def caught_up(self, partition: int) -> None:
        """Pass on."""
        self.handler.caught_up(partition)

    def committable(self, partition: int) -> int | None:
        """Pass on."""
        return self.handler.committable(partition)


def submitter_group(prefix: str) -> str:
    """Consumer group of every submitter on the bus."""
    return f"{prefix}.submitter"


def reclaimer_group(prefix: str) -> str:
    """Consumer group of every reclaimer on the bus."""
    return f"{prefix}.reclaimer"


def storage_root(config: AdapterConfig) -> Path:
    """The absolute storage folder (instance URIs are absolute paths below it)."""
    return Path(os.path.abspath(config.storage))


def payload_retention_s(config: AdapterConfig) -> float | None:
    """``submitter.payload_retention_hours`` in seconds (``None``: never expire)."""
    hours = config.submitter.payload_retention_hours
    return None if hours is None else hours * 3600


def retry_policy(config: AdapterConfig) -> RetryPolicy:
    """The retry policy of ``submitter.*``."""
    sub = config.submitter
    return RetryPolicy(sub.max_attempts, sub.backoff_initial_s, sub.backoff_max_s)


async def run_submit_role(
    config: AdapterConfig,
    kafka: KafkaConnection,
    stop: asyncio.Event,
    *,
    reclaim: bool = True,
    aging_s: float = 60.0,
    clock: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
    assigned: ReadyFlag | None = None,
) -> None:
    """Run until ``stop`` is set (the topics must exist). Raises the first
    :class:`AdapterError` of any part.

    ``assigned`` (optional) is kept set while the submitter holds partitions of the
    jobs topic.
    """
    prefix = config.kafka.topic_prefix
    jobs_topic = topic_names(prefix).jobs
    storage = storage_root(config)
    platform = make_platform(config.submitter)
    try:
        async with EventPublisher(kafka, client_id=f"{config.adapter_id}-submit") as pub:
            submitter = SubmitService(
                storage=storage,
                platform=platform,
                publisher=pub,
                topic=jobs_topic,
                policy=retry_policy(config),
                source=config.adapter_id,
                clock=clock,
                rand=rand,
                aging_s=aging_s,
            )
            handler: LogHandler = (
                submitter if assigned is None else AssignmentFlag(submitter, assigned)
            )
            parts: list[tuple[str, _Part]] = [
                ("submitter", submitter.run),
                (
                    "submitter ledger",
                    LogFollower(
                        kafka,
                        topic=jobs_topic,
                        group_id=submitter_group(prefix),
                        handler=handler,
                        client_id=f"{config.adapter_id}-submit",
                        start="committed",
                    ).run,
                ),
            ]
            if reclaim:
                reclaimer = ReclaimService(
                    storage=storage,
                    publisher=pub,
                    topic=jobs_topic,
                    source=config.adapter_id,
                    payload_retention_s=payload_retention_s(config),
                    clock=clock,
                )
                parts += orphan_sweeper(config, kafka, pub, reclaimer, clock)
                parts += [
                    ("reclaimer", reclaimer.run),
                    (
                        "reclaimer ledger",
                        LogFollower(
                            kafka,
                            topic=jobs_topic,
                            group_id=reclaimer_group(prefix),
                            handler=reclaimer,
                            client_id=f"{config.adapter_id}-reclaim",
                            start="committed",
                        ).run,
                    ),
                ]
            log.info(
                "submit role: platform %s, topic %s, storage %s, reclaimer %s",
                platform.name, jobs_topic, storage, "on" if reclaim else "off",
            )  # fmt: skip
            await run_parts(parts, stop)
    finally:
        await platform.aclose()


def orphan_sweeper(
    config: AdapterConfig,
    kafka: KafkaConnection,
    publisher: EventPublisher,
    reclaimer: ReclaimService,
    clock: Callable[[], float],
) -> list[tuple[str, _Part]]:
    """The orphan sweeper as a part (none when ``submitter.orphan_grace_hours`` is never)."""
    grace_h = config.submitter.orphan_grace_hours
    if grace_h is None:
        return []
    names = topic_names(config.kafka.topic_prefix)
    sweeper = OrphanSweeper(
        storage=storage_root(config),
        kafka=kafka,
        instances_topic=names.instances,
        publisher=publisher,
        jobs_topic=names.jobs,
        source=config.adapter_id,
        keys=RecordKeys.of(config.kafka.record_key_secret()),
        grace_s=grace_h * 3600,
        known=reclaimer.ledger.holds,
        clock=clock,
    )
    return [("orphan sweeper", sweeper.run)]


def submit_role(*, reclaim: bool = True) -> Role:
    """The submitter (and, unless ``reclaim`` is false, the reclaimer) as a role."""

    async def role(ctx: RoleContext) -> None:
        assigned = ctx.readiness.flag(
            "submit partitions assigned", "waiting for a partition assignment"
        )
        await ctx.topics()
        ctx.started.set()
        await run_submit_role(ctx.config, ctx.kafka, ctx.stop, reclaim=reclaim, assigned=assigned)

    return role


async def run_parts(parts: list[tuple[str, _Part]], stop: asyncio.Event) -> None:
    """Run every part; the first failure stops the others and is re-raised as itself."""

    async def guarded(name: str, part: _Part) -> None:
        try:
            await part(stop)
        except BaseException:
            log.debug("%s stopped by an error; stopping the role", name)
            stop.set()
            raise

    try:
        async with asyncio.TaskGroup() as group:
            for name, part in parts:
                group.create_task(guarded(name, part))
    except BaseExceptionGroup as eg:
        for exc in _leaves(eg):
            if isinstance(exc, AdapterError):
                raise exc from None
        raise


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
