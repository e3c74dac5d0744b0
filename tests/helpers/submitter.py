"""Run the submitter (and reclaimer) in-process against a real broker, and read the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from processors.reclaim import ReclaimService
from processors.submit import PlatformClient, RetryPolicy, SubmitService
from streams.events import Envelope, EventData, envelope
from streams.kafka import EventPublisher, LogFollower, Record, ensure_topics


@dataclass
class Harness:
    """A running submitter (and reclaimer) with handles for assertions."""

    submitter: SubmitService
    reclaimer: ReclaimService | None
    stop: asyncio.Event


@asynccontextmanager
async def running_submitter(
    bootstrap: str,
    topic: str,
    storage: Path,
    platform: PlatformClient,
    *,
    group: str,
    policy: RetryPolicy | None = None,
    aging_s: float = 3600.0,
    reclaim: bool = True,
    retention_s: float | None = None,
) -> AsyncIterator[Harness]:
    """Start submitter + reclaimer on ``topic`` (groups ``group``.submit/.reclaim);
    ``retention_s`` is the payload retention (``None``: payloads are kept)."""
    await ensure_topics(bootstrap, {topic: 3})
    stop = asyncio.Event()
    async with EventPublisher(bootstrap) as publisher:
        submitter = SubmitService(
            storage=storage,
            platform=platform,
            publisher=publisher,
            topic=topic,
            policy=policy or RetryPolicy(max_attempts=3, initial_s=0.05, max_s=0.2),
            source="test-submitter",
            aging_s=aging_s,
        )
        tasks = [
            asyncio.create_task(submitter.run(stop)),
            asyncio.create_task(
                LogFollower(
                    bootstrap,
                    topic=topic,
                    group_id=f"{group}.submit",
                    handler=submitter,
                    start="committed",
                ).run(stop)
            ),
        ]
        reclaimer = None
        if reclaim:
            reclaimer = ReclaimService(
                storage=storage,
                publisher=publisher,
                topic=topic,
                source="test-reclaimer",
                payload_retention_s=retention_s,
                sweep_interval_s=0.2,
            )
            tasks.append(asyncio.create_task(reclaimer.run(stop)))
            tasks.append(
                asyncio.create_task(
                    LogFollower(
                        bootstrap,
                        topic=topic,
                        group_id=f"{group}.reclaim",
                        handler=reclaimer,
                        start="committed",
                    ).run(stop)
                )
            )
        try:
            yield Harness(submitter, reclaimer, stop)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await platform.aclose()


async def publish(
    bootstrap: str, topic: str, items: Sequence[tuple[str, EventData]], *, time_ms: int = 0
) -> list[Envelope]:
    """Write records (acks=all) with envelopes stamped ``time_ms`` or now."""
    out = []
    async with EventPublisher(bootstrap) as publisher:
        for key, data in items:
            env = envelope(data, source="test", time_ms=time_ms or int(time.time() * 1000))
            await publisher.publish(topic, key, env)
            out.append(env)
    return out


def of_type(records: Sequence[Record], kind: str) -> list[Envelope]:
    """Envelopes of one event type, in ledger order (per partition)."""
    return [r.envelope for r in records if r.envelope.type == kind]
