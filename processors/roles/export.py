"""The ``export`` role: result files to DICOM and DICOMweb destinations (issue 17).

Follows ``<prefix>.exports`` in the consumer group ``<prefix>.exporter`` (shared by every
adapter on the bus, so each request has one exporter), attempts what is due with the
configured destinations' senders and writes the outcomes with one acks=all publisher.
It also serves ``POST /exports`` and ``GET /exports/{request_id}`` on the process's app.
Used by ``dicom-adapter export`` and ``dicom-adapter run``.
"""

from __future__ import annotations

import logging

from processors.export import ExportService, exports_router, make_senders, retry_policy
from processors.roles.shell import RoleContext
from processors.roles.submit import AssignmentFlag, run_parts, storage_root
from streams.kafka import EventPublisher, LogFollower, topic_names

log = logging.getLogger(__name__)


def exporter_group(prefix: str) -> str:
    """Consumer group of every exporter on the bus."""
    return f"{prefix}.exporter"


async def export_role(ctx: RoleContext) -> None:
    """Deliver exports until stopped; ``/readyz`` waits for a partition assignment."""
    config = ctx.config
    prefix = config.kafka.topic_prefix
    topic = topic_names(prefix).exports
    storage = storage_root(config)
    storage.mkdir(parents=True, exist_ok=True)  # uploads are staged below it
    assigned = ctx.readiness.flag(
        "export partitions assigned", "waiting for a partition assignment"
    )
    await ctx.topics()
    async with EventPublisher(ctx.kafka, client_id=f"{config.adapter_id}-export") as publisher:
        ctx.app.include_router(exports_router(config, storage, ctx.kafka, publisher))
        exporter = ExportService(
            storage=storage,
            senders=make_senders(config),
            publisher=publisher,
            topic=topic,
            policy=retry_policy(config),
            source=config.adapter_id,
            batch_size=config.export.batch_size,
            retention_s=config.export.retention_hours * 3600,
        )
        follower = LogFollower(
            ctx.kafka,
            topic=topic,
            group_id=exporter_group(prefix),
            handler=AssignmentFlag(exporter, assigned),
            client_id=f"{config.adapter_id}-export",
        )
        names = ", ".join(d.name for d in config.export.destinations) or "(none configured)"
        log.info("export role: topic %s, destinations %s", topic, names)
        ctx.started.set()
        await run_parts([("exporter", exporter.run), ("exporter ledger", follower.run)], ctx.stop)
