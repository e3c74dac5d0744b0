"""Heartbeats on ``<prefix>.sources``: every process says, on its own clock, what it owes.

A :class:`HeartbeatSender` publishes a ``source.heartbeat`` every ``interval_ms``, keyed by
the source (a compacted topic keeps the last one of each). The SCP's watermark is the
receipt time of the oldest instance not yet acknowledged by Kafka; a process that
receives nothing (a processor) owes nothing: its watermark is ``sent_at``. Heartbeats
are best effort: while the broker is unreachable they are skipped (the silence itself
holds the bus clock back, docs/processing.md "Time"), never queued.

A process that was frozen (SIGSTOP, a VM pause: its loop overslept by more than
``stall_ms``) may have senders queued at its door that tried while it was away. After
such a stall the watermark stays where it was before the stall for ``hold_ms``, and for
as long as ``busy()`` says the work that arrived meanwhile is not done (the SCP: senders
still waiting to be accepted, associations opened since), so their instances still
join the groups they were sent for -- at most ``hold_max_ms``: a source that stays
that busy is overloaded, and groups must close anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streams.events import SOURCE_STOPPED, SourceHeartbeat, envelope
from streams.kafka.publisher import Publisher

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 250


@dataclass(frozen=True, slots=True)
class Owed:
    """What a source still owes the bus: the receipt time (its clock) of the oldest
    instance not acknowledged by Kafka (``None``: nothing), and details for operators."""

    oldest: int | None = None
    pending: int = 0
    outbox_bytes: int = 0
    associations: int = 0


class HeartbeatSender:
    """Publishes this process's heartbeats; run :meth:`run` as a task.

    ``publisher()`` gives the open publisher or ``None`` while there is none;
    ``clock()`` is epoch ms on this process's clock; ``owes()`` says what the process
    still owes (default: nothing, the watermark is always now).
    """

    def __init__(
        self,
        *,
        source: str,
        topic: str,
        publisher: Callable[[], Publisher | None],
        clock: Callable[[], int],
        owes: Callable[[], Owed] | None = None,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        timeout_s: float = 2.0,
        hold_ms: int = 2000,
        hold_max_ms: int = 30_000,
        busy: Callable[[], bool] | None = None,
        on_stall: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        ae_titles: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.topic = topic
        self._publisher = publisher
        self._clock = clock
        self._owes = owes
        self.interval_ms = interval_ms
        self._timeout_s = timeout_s
        self.stall_ms = max(4 * interval_ms, 1000)
        self.hold_ms = hold_ms
        self.hold_max_ms = hold_max_ms
        self._busy = busy
        self._on_stall = on_stall
        self._monotonic = monotonic
        self.ae_titles = ae_titles
        self._last_beat: tuple[float, int] | None = None  # (monotonic s, wall ms) of the last
        # (wall ms held at, monotonic s of the minimum hold's end, of the cap)
        self._hold: tuple[int, float, float] | None = None
        self.sent = 0
        self.stalls = 0

    def heartbeat(self, state: str = "up") -> SourceHeartbeat:
        """The heartbeat to send now."""
        now = self._clock()
        owed = self._owes() if self._owes else Owed()
        watermark = now if owed.oldest is None else min(owed.oldest, now)
        held = self._held(now)
        return SourceHeartbeat(
            source=self.source,
            sent_at=now,
            watermark=watermark if held is None else min(watermark, held),
            pending=owed.pending,
            outbox_bytes=owed.outbox_bytes,
            associations=owed.associations,
            state=state,
            interval_ms=self.interval_ms,
            ae_titles=self.ae_titles,
        )

    def check_stall(self) -> None:
        """Note this moment of the heartbeat loop; a gap longer than ``stall_ms`` since
        the last one means the process was frozen: hold the watermark (module doc)."""
        mono, now = self._monotonic(), self._clock()
        last = self._last_beat
        if last is not None and (mono - last[0]) * 1000 > self.stall_ms:
            self._hold = (last[1], mono + self.hold_ms / 1000, mono + self.hold_max_ms / 1000)
            self.stalls += 1
            log.info("%s was frozen for %.1f s; holding its watermark", self.source, mono - last[0])
            if self._on_stall is not None:
                self._on_stall()
        self._last_beat = (mono, now)

    def _held(self, now: int) -> int | None:
        """Where a stall holds the watermark now (``None``: no hold)."""
        hold = self._hold
        if hold is None:
            return None
        mono = self._monotonic()
        if mono < hold[1] or (mono < hold[2] and self._busy is not None and self._busy()):
            return hold[0]
        self._hold = None
        return None

    async def send(self, state: str = "up") -> bool:
        """Publish one heartbeat; False when there is no publisher or the broker did
        not take it in time."""
        publisher = self._publisher()
        if publisher is None:
            return False
        beat = self.heartbeat(state)
        env = envelope(beat, source=self.source, time_ms=beat.sent_at)
        try:
            await asyncio.wait_for(publisher.publish(self.topic, self.source, env), self._timeout_s)
        except Exception as exc:  # best effort: the silence holds the clock back
            log.debug("heartbeat of %s not sent: %s", self.source, exc)
            return False
        self.sent += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Send every ``interval_ms`` until ``stop``, then :meth:`stopped`."""
        while not stop.is_set():
            self.check_stall()
            await self.send()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_ms / 1000)
        await self.stopped()

    async def stopped(self) -> bool:
        """Say ``stopped`` (the source owes nothing any more) -- unless it still owes:
        then it stays silent, and its silence holds the bus clock back until it is back
        or declared lost."""
        if self._owes is not None and self._owes().oldest is not None:
            return False
        return await self.send(SOURCE_STOPPED)
