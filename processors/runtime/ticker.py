"""Writing the bus clock into the log: ``clock.tick`` records on the partitions processors
read (the instances topic's, and the rekeyed topics' of repartitioned AE titles).

Windows close only by ticks (docs/processing.md, "Time"), so the log alone decides
every group: a replay meets the same ticks at the same places. The process that owns a
partition writes a tick when the bus watermark (:class:`~processors.runtime.clock.BusClock`)
passes something due there (a quiet deadline, a max age), and every ``keepalive_ms``
while the partition saw an instance within ``horizon_ms`` -- so a what-if replay with a
longer timeout still finds the clock moving (``dicom-adapter replay``).

:func:`ticks_due` is the pure decision; :class:`Ticker` runs it and publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from processors.runtime.clock import BusClock
from streams.events import SOURCE_LOST, ClockTick, SourceHeartbeat, envelope
from streams.kafka import Publisher

log = logging.getLogger(__name__)

TICK_KEY = "clock"


@dataclass(frozen=True, slots=True)
class PartitionView:
    """What the ticker needs to know of one owned instances partition."""

    next_due: int | None  # earliest due time of an open group (bus ms)
    last_instance: int | None  # log time of the newest instance seen


def ticks_due(
    watermark: int,
    partitions: Mapping[int, PartitionView],
    last_tick: Mapping[int, tuple[int, int]],
    local: int,
    *,
    keepalive_ms: int,
    horizon_ms: int,
) -> list[int]:
    """Partitions that need a tick at ``watermark`` now (pure).

    ``last_tick[p]`` is ``(watermark, local time)`` of the last tick written there. A tick
    is due when the watermark passed something due, or as a keep-alive while the
    partition saw an instance within the horizon; never one that does not move forward.
    """
    out: list[int] = []
    for p, view in partitions.items():
        last = last_tick.get(p)
        if last is not None and watermark <= last[0]:
            continue
        closes = view.next_due is not None and watermark > view.next_due
        active = view.last_instance is not None and watermark - view.last_instance <= horizon_ms
        if closes or (active and (last is None or local - last[1] >= keepalive_ms)):
            out.append(p)
    return out


def local_ms() -> int:
    """This process's monotonic clock in ms (only differences are used)."""
    return time.monotonic_ns() // 1_000_000


Gate = Callable[[], Awaitable[bool]]
"""Whether ticks may be written to a topic now (called after the watermark was read)."""


class Ticker:
    """Writes ticks for the partitions ``owned()`` reports (by topic) and declares lost
    sources. A topic with a gate (a rekeyed topic: :mod:`processors.roles.repartition`)
    gets its ticks only in rounds where the gate says its writers have caught up."""

    def __init__(
        self,
        clock: BusClock,
        publisher: Publisher,
        *,
        sources_topic: str,
        writer: str,
        owned: Callable[[], Mapping[str, Mapping[int, PartitionView]]],
        gates: Mapping[str, Gate] | None = None,
        keepalive_ms: int = 5000,
        horizon_ms: int = 600_000,
        period_s: float = 0.05,
        local: Callable[[], int] = local_ms,
    ) -> None:
        self.clock = clock
        self.publisher = publisher
        self.sources_topic = sources_topic
        self.writer = writer
        self.owned = owned
        self.gates = dict(gates or {})
        self.keepalive_ms = keepalive_ms
        self.horizon_ms = horizon_ms
        self.period_s = period_s
        self.local = local
        self._last: dict[str, dict[int, tuple[int, int]]] = {}
        self.written = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop``; a broker error is logged and tried again next round."""
        failing = False
        while not stop.is_set():
            try:
                await self.round()
            except Exception as exc:  # the next round tries again; the clock waits meanwhile
                # Said once: groups wait until ticks are written again (e.g. a missing ACL).
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "clock ticks not written, so no group closes meanwhile: %s",
                    exc,
                )
                failing = True
            else:
                if failing:
                    log.info("clock ticks written again")
                failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s)

    async def round(self) -> dict[str, list[int]]:
        """One decision and its writes; returns the partitions ticked, by topic."""
        local = self.local()
        await self._declare_lost(self.clock.lost(local))
        watermark = self.clock.watermark(local)
        if watermark is None:
            return {}
        owned = self.owned()
        for topic in set(self._last) - set(owned):
            del self._last[topic]
        ticked: dict[str, list[int]] = {}
        for topic, views in owned.items():
            last = self._last.setdefault(topic, {})
            for p in set(last) - set(views):
                del last[p]  # not ours any more: a new owner starts afresh
            due = ticks_due(
                watermark,
                views,
                last,
                local,
                keepalive_ms=self.keepalive_ms,
                horizon_ms=self.horizon_ms,
            )
            gate = self.gates.get(topic)
            if due and (gate is None or await gate()):
                await self._write(topic, due, watermark)
                for p in due:
                    last[p] = (watermark, local)
                ticked[topic] = due
        return ticked

    async def _write(self, topic: str, partitions: list[int], watermark: int) -> None:
        env = envelope(ClockTick(watermark, self.writer), source=self.writer, time_ms=watermark)
        await asyncio.gather(
            *(self.publisher.publish(topic, TICK_KEY, env, partition=p) for p in partitions)
        )
        self.written += len(partitions)

    async def _declare_lost(self, lost: Iterable[str]) -> None:
        bus_now = self.clock.now(self.local()) or 0
        for source in lost:
            now = int(time.time() * 1000)
            beat = SourceHeartbeat(source, sent_at=now, watermark=now, state=SOURCE_LOST)
            env = envelope(beat, source=self.writer, time_ms=now)
            await self.publisher.publish(self.sources_topic, source, env)
            silent = bus_now - self.clock.sources().get(source, (bus_now, 0, ""))[0]
            # Long gone before we looked (a source of an earlier run): not news.
            level = logging.INFO if silent > 2 * self.clock.idle_timeout_ms else logging.WARNING
            log.log(
                level,
                "source %s silent for %d s: declared lost, it holds back no group any more",
                source,
                silent // 1000,
            )


def fold_heartbeats(clock: BusClock, records: Iterable[tuple[SourceHeartbeat, int]]) -> None:
    """Fold ``(heartbeat, append time)`` pairs read from ``<prefix>.sources`` into ``clock``."""
    local = local_ms()
    for beat, appended in records:
        clock.heartbeat(beat, appended, local)
