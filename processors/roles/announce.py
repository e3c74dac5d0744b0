"""The process says its open groups on ``<prefix>.groups`` (issue 15).

Twice a second it asks every lane's processor for the open groups of each owned
partition that changed since (:meth:`~processors.base.JobProcessor.open_groups_version`)
and writes what :class:`~processors.groups.announce.Announcements` says is due. It
lists only the oldest groups one record holds and counts the rest
(:meth:`~processors.base.JobProcessor.open_groups_head`: listing ten thousand open
groups took ~9 % of the runtime's CPU on ``bench.windows``), yields to the event loop
between partitions and waits at least four times as long as a round took. It is an operator's
view: a failed write is logged and tried again, never fatal to the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from processors.groups.announce import Announcements, Listing, Where
from processors.roles.lane import Lane
from streams.events import envelope
from streams.kafka import Publisher

log = logging.getLogger(__name__)

INTERVAL_S = 0.5


def owner_name(adapter_id: str) -> str:
    """``<adapter id>/process@<host>:<pid>``: which replica owns a partition."""
    return f"{adapter_id}/process@{socket.gethostname()}:{os.getpid()}"


class GroupAnnouncer:
    """Writes ``groups.open`` records for the partitions ``lanes`` own."""

    def __init__(
        self,
        lanes: Callable[[], Mapping[str, Lane]],
        publisher: Publisher,
        topic: str,
        *,
        owner: str,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.lanes = lanes
        self.publisher = publisher
        self.topic = topic
        self.clock = clock
        self.state = Announcements(owner)
        self._warned = False
        self._cache: dict[Where, tuple[int, Listing]] = {}

    async def current(self) -> dict[Where, Listing]:
        """The first open groups of every owned partition (as many as a record holds)
        and their count, now (unchanged ones from a cache: the same object, which
        :class:`Announcements` recognises cheaply)."""
        out: dict[Where, Listing] = {}
        limit = self.state.max_groups
        for ae_title, lane in self.lanes().items():
            runtime = lane.runtime
            processor = runtime.processors[ae_title]
            for partition in sorted(runtime.ready_partitions):
                where = (ae_title, lane.input_topic, partition)
                version = processor.open_groups_version(partition)
                cached = self._cache.get(where)
                if version is not None and cached is not None and cached[0] == version:
                    out[where] = cached[1]
                    continue
                out[where] = listing = Listing(*processor.open_groups_head(partition, limit))
                if version is not None:
                    self._cache[where] = (version, listing)
                await asyncio.sleep(0)  # let records flow between partitions
        for where in [w for w in self._cache if w not in out]:
            del self._cache[where]
        return out

    async def announce(self) -> int:
        """Write what is due now; returns how many records."""
        current = await self.current()
        due = self.state.due(self.clock(), current)
        if due:
            items = [
                (r.key, envelope(r, source=self.state.owner, time_ms=r.published_at)) for r in due
            ]
            await self.publisher.publish_many(self.topic, items)
            self.state.said(due)
        return len(due)

    async def run(self, done: asyncio.Event) -> None:
        """Announce every :data:`INTERVAL_S` until ``done``."""
        loop = asyncio.get_running_loop()
        while not done.is_set():
            started = loop.time()
            try:
                await self.announce()
                self._warned = False
            except Exception as exc:
                if not self._warned:  # once per outage, not twice a second
                    log.warning("cannot write open groups to %s: %s", self.topic, exc)
                    self._warned = True
            pause = max(INTERVAL_S, 4 * (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), pause)
