"""Readiness polls and small broker queries shared by every suite (one copy of each).

A poll waits for a condition with a deadline; it is never the assertion itself.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from processors.roles import processors_group
from streams.errors import BrokerError
from streams.events import ClockTick, InstanceReceived
from streams.kafka import Connection, Record, read_topic


def free_port() -> int:
    """A TCP port nobody listens on right now (for a server the test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str = "condition",
    *,
    timeout_s: float = 60.0,
    interval_s: float = 0.05,
) -> None:
    """Poll ``check`` (sync or async) until it holds; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s} s")
        await asyncio.sleep(interval_s)


def wait_for(
    condition: Callable[[], bool], what: str = "condition", timeout_s: float = 15.0
) -> float:
    """The blocking form of :func:`wait_until` (tests that run no event loop); returns the
    seconds it took."""
    start = time.monotonic()
    deadline = start + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


async def wait_for_ledger(
    bootstrap: Connection,
    topic: str,
    done: Callable[[list[Record]], bool],
    *,
    timeout_s: float = 60.0,
    alive: Callable[[], None] | None = None,
) -> list[Record]:
    """Read ``topic`` until ``done(records)`` (a readiness poll); returns the records.
    ``alive`` may raise to stop waiting early (e.g. the process under test died). A
    broker that is still recovering (a test that paused it) is asked again."""
    deadline = time.monotonic() + timeout_s
    records: list[Record] = []
    error: BrokerError | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            records = await read_topic(bootstrap, topic)
        except BrokerError as exc:
            error = exc
        else:
            if done(records):
                return records
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"ledger condition not met in {timeout_s} s; {len(records)} events; last error: {error}"
    )


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """What consumer group ``group`` has committed, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: int(om.offset) for tp, om in found.items()}


def ticks_past_inputs(records: list[Record], ae_title: str, quiet_ms: int) -> dict[int, int] | None:
    """``{partition: offset}`` of the first ``clock.tick`` past the deadline of the last
    instance of ``ae_title`` (its log time + ``quiet_ms``) on every partition of
    ``records`` that holds one; ``None`` while a partition has no such tick yet (pure).
    A re-published copy of an instance (an envelope id seen before) opens no group, so
    it needs no tick."""
    last: dict[int, int] = {}
    ticked: dict[int, int] = {}
    seen: set[tuple[int, str]] = set()
    for record in records:  # offset order within each partition
        data, partition = record.envelope.data, record.partition
        if isinstance(data, InstanceReceived):
            copy = (partition, record.envelope.id)
            if data.called_ae != ae_title or copy in seen:
                continue
            seen.add(copy)
            last[partition] = record.timestamp
            ticked.pop(partition, None)
        elif (
            isinstance(data, ClockTick)
            and partition in last
            and partition not in ticked
            and data.watermark > last[partition] + quiet_ms
        ):
            ticked[partition] = record.offset
    return ticked if set(ticked) == set(last) else None


async def wait_clock_past_inputs(
    bootstrap: str,
    prefix: str,
    ae_title: str,
    quiet_ms: int,
    *,
    topic: str | None = None,
    timeout_s: float = 90.0,
    alive: Callable[[], None] | None = None,
) -> None:
    """The barrier after which no group of the instances of ``ae_title`` read so far can
    still be written -- instead of a fixed wait "long enough for a late duplicate to show":
    every partition of its input (``topic``: its rekeyed topic, else
    ``<prefix>.instances``) holding one has a tick past the last one's deadline, and the
    AE title's consumer group committed past that tick (a commit never passes a closed
    group that is not written yet, nor an open one)."""
    topic = topic or f"{prefix}.instances"
    group = processors_group(prefix, ae_title)

    async def passed() -> bool:
        if alive is not None:
            alive()
        ticks = ticks_past_inputs(await read_topic(bootstrap, topic), ae_title, quiet_ms)
        if ticks is None:
            return False
        committed = await committed_offsets(bootstrap, group)
        return all(committed.get(TopicPartition(topic, p), -1) > o for p, o in ticks.items())

    await wait_until(
        passed, f"{group}: clock past every input of {topic}", timeout_s=timeout_s, interval_s=0.5
    )


class HoldRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """A group member's listener that keeps the next rebalance from completing until
    :attr:`release` is set: other members join but get no partition meanwhile."""

    def __init__(self) -> None:
        self.assigned = asyncio.Event()
        self.release = asyncio.Event()

    async def on_partitions_revoked(self, revoked: object) -> None:
        if self.assigned.is_set():
            await self.release.wait()

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.assigned.set()
