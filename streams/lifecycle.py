"""One lifecycle for every long-lived client and server in :mod:`streams`."""

from __future__ import annotations

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
