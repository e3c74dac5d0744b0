"""The roles a process can run, as :data:`processors.app.Role` functions.

``scp`` receives DICOM, ``process`` turns instances into closed groups and jobs,
``submit`` hands jobs to the platform and reclaims storage. ``run`` is all three in one
process; the role commands run one each (scale-out, DESIGN.md §3.1).
"""

from __future__ import annotations

import logging
from typing import Any

from processors.app import Role, RoleContext
from processors.registry import resolve_processor
from processors.submit.role import run_submit_role
from streams.config import AdapterConfig
from streams.scp import ScpService

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
    service = ScpService(config, ae_tags=required_tags(config), bootstrap_servers=ctx.bootstrap)
    async with service:
        log.info(
            "scp role ready: DICOM on %s:%d, AE titles %s, events to %s",
            config.scp.host,
            service.port,
            ", ".join(ae.ae_title for ae in config.scp.ae_titles) or "(none)",
            ctx.bootstrap,
        )
        ctx.started.set()
        await ctx.stop.wait()


def submit_role(*, reclaim: bool = True) -> Role:
    """The submitter (and, unless ``reclaim`` is false, the reclaimer)."""

    async def role(ctx: RoleContext) -> None:
        assigned = ctx.readiness.flag(
            "submit partitions assigned", "waiting for a partition assignment"
        )
        ctx.started.set()
        await run_submit_role(
            ctx.config, ctx.bootstrap, ctx.stop, reclaim=reclaim, assigned=assigned
        )

    return role
