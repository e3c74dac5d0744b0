"""The process says its open groups on ``<prefix>.groups`` (issue 15).

Twice a second it asks every lane's processor for the open groups of each partition it
owns and writes what :class:`~processors.groups.announce.Announcements` says is due.
It is an operator's view: a failed write is logged and tried again, never fatal to
the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from processors.groups.announce import Announcements, Where
from processors.roles.lane import Lane
from streams.events import OpenGroupInfo, envelope
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

    def current(self) -> dict[Where, Sequence[OpenGroupInfo]]:
        """The open groups of every owned partition, now."""
        out: dict[Where, Sequence[OpenGroupInfo]] = {}
        for ae_title, lane in self.lanes().items():
            runtime = lane.runtime
            processor = runtime.processors[ae_title]
            for partition in sorted(runtime.ready_partitions):
                out[(ae_title, lane.input_topic, partition)] = processor.open_groups_on(partition)
        return out

    async def announce(self) -> int:
        """Write what is due now; returns how many records."""
        due = self.state.due(self.clock(), self.current())
        if due:
            items = [
                (r.key, envelope(r, source=self.state.owner, time_ms=r.published_at)) for r in due
            ]
            await self.publisher.publish_many(self.topic, items)
            self.state.said(due)
        return len(due)

    async def run(self, done: asyncio.Event) -> None:
        """Announce every :data:`INTERVAL_S` until ``done``."""
        while not done.is_set():
            try:
                await self.announce()
                self._warned = False
            except Exception as exc:
                if not self._warned:  # once per outage, not twice a second
                    log.warning("cannot write open groups to %s: %s", self.topic, exc)
                    self._warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), INTERVAL_S)
