"""The ``scp`` role: receive DICOM (C-STORE, and STOW-RS on the HTTP app), store each
instance, publish ``instance.received``.

While Kafka is unreachable instances are still accepted: their events wait in
``<storage>/.outbox/<adapter_id>`` and are published when the broker is back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from processors.registry import resolve_processor
from processors.roles.dicomweb import stow_router
from processors.roles.shell import RoleContext
from streams.config import AdapterConfig
from streams.dicomweb import StowReceiver
from streams.scp import ScpService, kafka_publisher_factory

log = logging.getLogger(__name__)


def required_tags(config: AdapterConfig) -> dict[str, tuple[str, ...]]:
    """Extra tags each AE title's processor wants in ``instance.received.tags``."""
    tags: dict[str, tuple[str, ...]] = {}
    for ae in config.scp.ae_titles:
        cls: Any = resolve_processor(ae.processor)
        tags[ae.ae_title] = tuple(cls.required_tags(ae.ae_title, ae.processor_settings))
    return tags


async def scp_role(ctx: RoleContext) -> None:
    """Receive C-STORE/C-ECHO until stopped; events go to Kafka or the outbox."""
    config = ctx.config

    async def topics() -> object:
        return await ctx.topics(timeout_s=10.0)

    service = ScpService(
        config,
        ae_tags=required_tags(config),
        publisher_factory=kafka_publisher_factory(config, prepare=topics),
    )
    async with service:
        titles = [ae.ae_title for ae in config.scp.ae_titles]
        receiver = StowReceiver(service.handler.store_instance, titles)
        ctx.app.include_router(stow_router(receiver))
        log.info(
            "scp role ready: DICOM on %s:%d, AE titles %s, events to %s",
            config.scp.host,
            service.port,
            ", ".join(ae.ae_title for ae in config.scp.ae_titles) or "(none)",
            ctx.kafka,
        )
        ctx.started.set()
        try:
            await ctx.stop.wait()
        finally:
            await asyncio.to_thread(receiver.close)
