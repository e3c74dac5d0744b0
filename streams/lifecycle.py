"""One lifecycle for every long-lived client and server in :mod:`streams`."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class Service:
    """Base of things that are started and stopped: ``async with`` does both.

    Subclasses implement :meth:`start` and :meth:`stop`; ``stop`` must be safe to
    call when ``start`` failed half-way (STYLE.md §9: clients are async context
    managers created inside the running loop).
    """

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def first_of(stop: asyncio.Event, wake: asyncio.Event | None, wait_s: float | None) -> bool:
    """Wait for ``stop`` or ``wake`` or ``wait_s`` seconds (``None``: no limit); returns
    True if ``stop`` is set. The worker loops' one way to sleep until there is work."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    return stop.is_set()
