"""Kafka plumbing of the bench: topics, the pre-produced log, output watchers, probes.

All times are wall-clock epoch milliseconds so they compare with broker timestamps: the
output topics use ``message.timestamp.type=LogAppendTime``, so an output record's
timestamp is the instant the broker appended (acknowledged) it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from bench.windows.data import Event
from streams.kafka import ensure_topics

#: Input topics keep everything (event times are in the past); outputs are stamped by
#: the broker on append.
INPUT_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
OUTPUT_CONFIG = {"retention.ms": "-1", "message.timestamp.type": "LogAppendTime"}

# (group key, members) of one output record, or None for records that are not counted
Parser = Callable[[bytes | None, bytes], tuple[str, int] | None]


def now_ms() -> int:
    """Wall clock, epoch milliseconds."""
    return time.time_ns() // 1_000_000


async def create_topics(
    bootstrap: str, inputs: Sequence[str], outputs: Sequence[str], partitions: int
) -> None:
    """Create the input and output topics with the bench's configs."""
    configs = {name: INPUT_CONFIG for name in inputs} | {name: OUTPUT_CONFIG for name in outputs}
    await ensure_topics(
        bootstrap, dict.fromkeys([*inputs, *outputs], partitions), configs=configs, timeout_s=60
    )


async def produce(bootstrap: str, topic: str, events: Iterable[Event]) -> int:
    """Produce ``events`` (acks=all) and wait until all are acknowledged; returns count."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for ev in events:
            pending.append(
                await producer.send(
                    topic,
                    ev.value,
                    key=ev.key,
                    partition=ev.partition,
                    timestamp_ms=ev.timestamp_ms,
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return 0


@dataclass(slots=True)
class WatchResult:
    """What a watcher saw on an output topic."""

    groups: int = 0
    members: int = 0
    keys: set[str] = field(default_factory=set)
    ignored: int = 0
    first_append_ms: int | None = None
    last_append_ms: int | None = None
    last_seen_ms: int | None = None  # wall time the watcher read the last counted record


class OutputWatcher:
    """Counts closed groups on an output topic until ``expected`` arrived.

    Reads every partition from the beginning (no consumer group) in the bench's own
    process, so it costs the measured process nothing but a little CPU of the machine.
    ``read_committed`` for transactional producers: records count once committed.
    """

    def __init__(
        self, bootstrap: str, topic: str, parse: Parser, expected: int, *, committed: bool = False
    ) -> None:
        self.committed = committed
        self.bootstrap = bootstrap
        self.topic = topic
        self.parse = parse
        self.expected = expected
        self.result = WatchResult()
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start reading in a task."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            isolation_level="read_committed" if self.committed else "read_uncommitted",
        )
        await consumer.start()
        parts = consumer.partitions_for_topic(self.topic)
        while not parts:
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(self.topic)
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read(consumer))

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        res = self.result
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for messages in batch.values():
                    for msg in messages:
                        parsed = self.parse(msg.key, msg.value)
                        if parsed is None:
                            res.ignored += 1
                            continue
                        key, members = parsed
                        res.groups += 1
                        res.members += members
                        res.keys.add(key)
                        ts = msg.timestamp
                        if res.first_append_ms is None or ts < res.first_append_ms:
                            res.first_append_ms = ts
                        if res.last_append_ms is None or ts > res.last_append_ms:
                            res.last_append_ms = ts
                        res.last_seen_ms = now_ms()
                if res.groups >= self.expected:
                    self.done.set()
        finally:
            await consumer.stop()

    async def wait(self, timeout_s: float) -> bool:
        """Wait for ``expected`` groups; ``False`` on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.done.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class GroupProbe:
    """Notes when a consumer group first becomes ``Stable`` with its members: records flow.

    The same start mark for both sides, without hooks in either (the processors'
    own "first record" marks are reported where available). With ``group_id=None`` it
    watches for the first group that did not exist when :meth:`start` was called.

    ``members`` > 1 (replicas of one processor): the mark is the first ``Stable`` with at
    least that many members; an earlier ``Stable`` with fewer is kept as
    :attr:`split_ms` (those members worked alone before the mark), the members'
    partitions at the mark as :attr:`assignment`, and the group is then watched until
    :meth:`stop`: every state or member count other than ``Stable`` with ``members`` is
    kept in :attr:`changes` (a rebalance during the timed span).
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str | None,
        interval_s: float = 0.05,
        on_stable: Callable[[], None] | None = None,
        *,
        members: int = 1,
        watch_interval_s: float = 0.5,
    ) -> None:
        self.bootstrap = bootstrap
        self.on_stable = on_stable
        self.group_id = group_id
        self.interval_s = interval_s
        self.members = members
        self.watch_interval_s = watch_interval_s
        self.stable_ms: int | None = None
        self.split_ms: int | None = None
        self.assignment: list[list[int]] = []  # partitions of each member at the mark
        self.changes: list[str] = []
        self._known: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start polling in a task."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        if self.group_id is None:
            self._known = {g[0] for g in await admin.list_consumer_groups()}
        self._task = asyncio.create_task(self._poll(admin))

    async def _candidates(self, admin: AIOKafkaAdminClient) -> list[str]:
        if self.group_id is not None:
            return [self.group_id]
        return [g[0] for g in await admin.list_consumer_groups() if g[0] not in self._known]

    async def _poll(self, admin: AIOKafkaAdminClient) -> None:
        try:
            while self.stable_ms is None:
                for group in await self._describe(admin):
                    # (error_code, group_id, state, protocol_type, protocol, members, ...)
                    state, members = group[2], group[5]
                    if state != "Stable" or not members or self.stable_ms is not None:
                        continue
                    if len(members) < self.members:
                        if self.split_ms is None:
                            self.split_ms = now_ms()
                        continue
                    self.stable_ms = now_ms()
                    self.group_id = group[1]
                    if self.on_stable is not None:
                        self.on_stable()
                    # (member_id, client_id, client_host, metadata, assignment)
                    self.assignment = [_partitions(member[4]) for member in members]
                if self.stable_ms is None:
                    await asyncio.sleep(self.interval_s)
            if self.members > 1:
                await self._watch(admin)
        finally:
            await admin.close()

    async def _describe(self, admin: AIOKafkaAdminClient) -> list[Any]:
        try:
            names = await self._candidates(admin)
            responses = await admin.describe_consumer_groups(names) if names else []
        except KafkaError:  # e.g. no group coordinator yet on a fresh broker
            return []
        return [group for response in responses for group in response.groups]

    async def _watch(self, admin: AIOKafkaAdminClient) -> None:
        last = f"Stable, {self.members} members"
        while True:
            await asyncio.sleep(self.watch_interval_s)
            for group in await self._describe(admin):
                seen = f"{group[2]}, {len(group[5])} members"
                if seen != last:
                    assert self.stable_ms is not None
                    self.changes.append(f"+{(now_ms() - self.stable_ms) / 1000:.1f}s {seen}")
                    last = seen

    async def stop(self) -> None:
        """Stop polling (again: no-op)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _partitions(assignment: bytes) -> list[int]:
    """The partitions in a member's assignment (consumer protocol), sorted."""
    if not assignment:
        return []
    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
    return sorted(tp.partition for tp in decoded.partitions())
