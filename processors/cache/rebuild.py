"""Rebuild a lost (or half-built) cache database from the topics (thin aiokafka shell).

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

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from processors.cache.store import CacheStore
from streams.errors import BrokerError
from streams.events import Envelope, EventDecodeError, GroupClosed, InputOffset, InstanceReceived
from streams.events import decode as decode_event
from streams.kafka import partition_counts
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
    bootstrap_servers: str,
    instances_topic: str,
    jobs_topic: str,
    now_ms: int,
    timeout_ms: int = 500,
) -> RebuildResult:
    """Fill ``store`` with ``ae_title``'s instances from the topics; see the module doc."""
    consumed: set[tuple[int, int]] = set()

    def on_job_event(_partition: int, _offset: int, env: Envelope) -> None:
        data = env.data
        if isinstance(data, GroupClosed) and data.ae_title == ae_title:
            consumed.update((i.partition, i.offset) for i in data.inputs)

    await scan_topic(bootstrap_servers, jobs_topic, on_job_event, timeout_ms=timeout_ms)
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

    await scan_topic(bootstrap_servers, instances_topic, on_instance, timeout_ms=timeout_ms)
    if batch:
        store.add_many(batch, now_ms)
    return RebuildResult(counts["cached"], counts["released"], counts["missing"])


async def scan_topic(
    bootstrap_servers: str,
    topic: str,
    on_event: Callable[[int, int, Envelope], None],
    *,
    timeout_ms: int = 500,
    stall_s: float = 60.0,
) -> int:
    """Call ``on_event(partition, offset, envelope)`` for every decodable record of
    ``topic`` up to its end at the start of the scan; returns how many were read.

    No consumer group, no commits. A missing topic has nothing to read. Raises
    :class:`BrokerError` when Kafka cannot be reached or nothing arrives for ``stall_s``.
    """
    count = (await partition_counts(bootstrap_servers, [topic])).get(topic, 0)
    if not count:
        log.info("cache rebuild: topic %s does not exist yet; nothing to read", topic)
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    read = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        progress = loop.time()
        while pending:
            if loop.time() - progress > stall_s:
                raise BrokerError(
                    f"reading {topic} to rebuild the cache stalled for {stall_s:g} s "
                    f"({read} records read); check the broker and restart"
                )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if not pending:
                break
            batch = await consumer.getmany(*pending, timeout_ms=timeout_ms, max_records=5000)
            for tp, records in batch.items():
                progress = loop.time()
                for rec in records:
                    if rec.offset >= ends[tp]:
                        continue
                    try:
                        env = decode_event(rec.value or b"")
                    except EventDecodeError as exc:
                        log.warning(
                            "cache rebuild: skipping %s[%d]@%d: %s",
                            topic,
                            tp.partition,
                            rec.offset,
                            exc,
                        )
                        continue
                    on_event(tp.partition, rec.offset, env)
                    read += 1
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} to rebuild the cache failed: {exc}") from exc
    finally:
        await consumer.stop()
    return read


def _file_exists(uri: str) -> bool:
    try:
        return uri_to_path(uri).is_file()
    except ValueError:
        return False
