"""What the submitter and reclaimer need to write events: :class:`Publisher`.

Production uses :class:`streams.kafka.EventPublisher` (``acks=all``, idempotent); anything
with an ``async publish(topic, key, envelope)`` that returns only once the broker
acknowledged the write fits.
"""

from __future__ import annotations

from typing import Protocol

from streams.events import Envelope


class Publisher(Protocol):
    """Something that writes an event and returns only once it is durable."""

    async def publish(self, topic: str, key: str, env: Envelope, /) -> object:
        """Write ``env`` to ``topic`` under ``key``; raise ``BrokerError`` on failure."""
