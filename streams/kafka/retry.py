"""Trying a broker call again while the broker recovers (one rule for every caller)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.errors import BrokerError

log = logging.getLogger(__name__)

T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """A broker error worth another try (aiokafka marks them ``retriable``)."""
    return isinstance(exc, BrokerError | TimeoutError) or bool(getattr(exc, "retriable", False))


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout_s: float,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> T:
    """``await call()``, again after transient errors until ``timeout_s`` is spent.

    Raises :class:`BrokerError` naming ``what`` when the call never worked, or at once
    for an error that is not transient. Found by the chaos suite: right after a broker
    pause, group coordinators are briefly unavailable (GroupCoordinatorNotAvailable),
    and a role that gave up at the first such answer stopped for nothing.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = first_delay_s
    while True:
        try:
            remaining = max(0.1, deadline - loop.time())
            return await asyncio.wait_for(call(), remaining)
        except Exception as exc:
            if not transient(exc) or loop.time() + delay >= deadline:
                raise BrokerError(f"{what} failed: {exc}") from exc
            # Not a warning: expected while a broker or its coordinators come back.
            log.info("%s failed (%s); trying again in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)  # back off while the broker recovers
            delay = min(delay * 2, max_delay_s)
