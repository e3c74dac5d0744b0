"""Appending to the outbox with group commit: one fsync for every append waiting then."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streams import metrics
from streams.scp.outbox import Outbox

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The event is neither in Kafka nor in the outbox (e.g. the disk is full)."""


class OutboxAppender:
    """Appends encoded entries to an :class:`Outbox`; :meth:`append` returns once the
    entry is fsynced. Appends that arrive while a write runs go together in the next."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._appending = 0
        self._queued: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """An append is waiting or being written."""
        return self._appending > 0 or bool(self._queued)

    async def append(self, line: bytes) -> None:
        """Write ``line`` durably; raises :class:`DeliveryError` when it cannot."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._appending += 1
        self._queued.append((line, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="outbox-writer")
        try:
            await fut
        finally:
            self._appending -= 1

    async def close(self) -> None:
        """Wait for the write under way, if any."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _write_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await asyncio.to_thread(self._outbox.append, [line for line, _ in batch])
            except Exception as exc:
                log.error("cannot write to the outbox: %s", exc)
                err = DeliveryError(f"outbox write failed: {exc}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            metrics.set_outbox_depth(self._outbox.pending_bytes)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
