"""Rebuild a lost (or half-built) cache database from the topics (thin shell on the reader).

The topics are the source of truth (DESIGN.md §1), so the cache can be recovered:

1. read ``<prefix>.jobs`` from the beginning to its current end and collect the inputs
   of every ``group.closed`` of the AE title (jobs and removals, of any processor):
   those instances were consumed;
2. read ``<prefix>.instances`` the same way; each instance of the AE title is stored,
   as ``released`` when an input it was read at is consumed or its file is gone (the
   reclaimer deleted it), else as ``cached``.

Records after the end offsets seen here reach the processor through the runtime as
usual; positions read here again are ignored by the store. Instances older than the
topic's retention cannot come back: keep ``retention.ms`` of the instances topic at
least as long as instances may stay cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.structs import TopicPartition

from processors.cache.store import CacheStore
from streams.events import Envelope, GroupClosed, InputOffset, InstanceReceived
from streams.kafka import Connection, LogReader
from streams.kafka.reader import BEGINNING
from streams.storage import uri_to_path

log = logging.getLogger(__name__)

_BATCH = 1000
REASON_CONSUMED = "consumed"
REASON_FILE_MISSING = "file-missing"


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild stored."""

    cached: int = 0
    released: int = 0
    missing_files: int = 0

    def __str__(self) -> str:
        return (
            f"{self.cached} cached, {self.released} already consumed, "
            f"{self.missing_files} without a file"
        )


async def rebuild(
    store: CacheStore,
    ae_title: str,
    *,
    kafka: Connection,
    instances_topic: str,
    jobs_topic: str,
    now_ms: int,
) -> RebuildResult:
    """Fill ``store`` with ``ae_title``'s instances from the topics; see the module doc."""
    consumed: set[tuple[int, int]] = set()

    def on_job_event(_partition: int, _offset: int, env: Envelope) -> None:
        data = env.data
        if isinstance(data, GroupClosed) and data.ae_title == ae_title:
            consumed.update((i.partition, i.offset) for i in data.inputs)

    await scan_topic(kafka, jobs_topic, on_job_event)
    batch: list[tuple[InstanceReceived, InputOffset, str | None]] = []
    counts = {"cached": 0, "released": 0, "missing": 0}

    def on_instance(partition: int, offset: int, env: Envelope) -> None:
        data = env.data
        if not isinstance(data, InstanceReceived) or data.called_ae != ae_title:
            return
        reason: str | None = None
        if (partition, offset) in consumed:
            reason = REASON_CONSUMED
            counts["released"] += 1
        elif not _file_exists(data.uri):
            reason = REASON_FILE_MISSING
            counts["missing"] += 1
        else:
            counts["cached"] += 1
        batch.append((data, InputOffset(partition, offset), reason))
        if len(batch) >= _BATCH:
            store.add_many(batch, now_ms)
            batch.clear()

    await scan_topic(kafka, instances_topic, on_instance)
    if batch:
        store.add_many(batch, now_ms)
    return RebuildResult(counts["cached"], counts["released"], counts["missing"])


async def scan_topic(
    kafka: Connection,
    topic: str,
    on_event: Callable[[int, int, Envelope], None],
    *,
    stall_s: float = 60.0,
) -> int:
    """Call ``on_event(partition, offset, envelope)`` for every decodable record of
    ``topic`` up to its end at the start of the scan; returns how many were read.

    No consumer group, no commits. A missing topic has nothing to read. Raises
    :class:`BrokerError` when Kafka cannot be reached or nothing arrives for ``stall_s``.
    """
    read = 0
    async with LogReader(kafka, client_id="dicom-adapter-cache-rebuild") as reader:
        partitions = await reader.partitions(topic)
        if not partitions:
            log.info("cache rebuild: topic %s does not exist yet; nothing to read", topic)
            return 0
        starts = {TopicPartition(topic, p): BEGINNING for p in partitions}
        async for batch in reader.batches(starts, stall_s=stall_s):
            for record in batch:
                on_event(record.partition, record.offset, record.envelope)
            read += len(batch)
    return read


def _file_exists(uri: str) -> bool:
    try:
        return uri_to_path(uri).is_file()
    except ValueError:
        return False
