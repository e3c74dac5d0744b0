"""The one place where pynetdicom's association threads cross into asyncio (STYLE.md §8).

A C-STORE handler runs in an association thread and must not answer before its event
is durable; :class:`LoopBridge` runs :meth:`Delivery.deliver` on the service's loop
with ``asyncio.run_coroutine_threadsafe`` and blocks that thread until it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Protocol

from streams.events import Envelope
from streams.scp.appender import DeliveryError


class EventSink(Protocol):
    """Blocking, thread-side delivery of one event (what the C-STORE handler calls)."""

    def deliver(self, topic: str, key: str, env: Envelope) -> None:
        """Return once the event is durable; raise :class:`DeliveryError` otherwise.

        Any other exception is a bug in publishing (not the broker's failure, which the
        outbox absorbs) and reaches the caller as it is.
        """
        ...


class LoopBridge:
    """An :class:`EventSink` that runs ``deliver`` coroutines on ``loop``.

    ``timeout_s`` bounds how long an association thread waits (the coroutine is
    cancelled after that and the C-STORE fails with Out of Resources).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[str, str, Envelope], Awaitable[None]],
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._timeout = timeout_s

    def deliver(self, topic: str, key: str, env: Envelope) -> None:
        """Blocking: run the delivery on the loop and wait for it (from any thread).

        A timeout, a cancellation or a stopped loop is a :class:`DeliveryError`; what
        ``deliver`` raises is raised here unchanged, so a bug is not mistaken for
        missing resources (0xA700).
        """

        async def run() -> None:
            await self._deliver(topic, key, env)

        try:
            future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        except RuntimeError as exc:  # the loop is closed: the service is stopping
            raise DeliveryError(f"event delivery is stopped: {exc}") from exc
        try:
            future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeliveryError(f"event not durable after {self._timeout:g} s") from None
        except concurrent.futures.CancelledError:
            raise DeliveryError("event delivery was cancelled (service stopping)") from None
