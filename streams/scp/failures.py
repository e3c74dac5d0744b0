"""Which failures of publishing are the broker's, and how a bug is logged without PHI.

The SCP keeps an event in its outbox only when the broker failed it (retrying later can
help); anything else is a bug, which must fail loudly rather than pile up in the outbox
(:mod:`streams.scp.delivery`, :mod:`streams.scp.handlers`).
"""

from __future__ import annotations

import traceback

from aiokafka.errors import KafkaError

from streams.errors import BrokerError

#: What a publish raises when the broker, not the code, is the problem: the adapter's
#: :class:`~streams.errors.BrokerError`, aiokafka's ``KafkaError`` family, a timeout
#: (``asyncio.TimeoutError`` is ``TimeoutError``) and network errors (``ConnectionError``
#: is an ``OSError``).
BROKER_ERRORS: tuple[type[Exception], ...] = (BrokerError, KafkaError, TimeoutError, OSError)


def is_broker_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`BROKER_ERRORS` (so a retry can help)."""
    return isinstance(exc, BROKER_ERRORS)


def traceback_without_message(exc: BaseException) -> str:
    """``exc``'s traceback, ending with its type but not its message, for ERROR logs.

    A message may quote the data at hand (an event carries the Patient ID), so it is
    left to a DEBUG record: no PHI at INFO and above (STYLE.md §12).
    """
    frames = "".join(traceback.format_tb(exc.__traceback__))
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    return f"Traceback (most recent call last):\n{frames}{name} (its message: DEBUG level)"


__all__ = ["BROKER_ERRORS", "is_broker_error", "traceback_without_message"]
