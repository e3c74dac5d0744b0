"""Read a whole topic once, from the beginning to its current end (no consumer group).

The auditor's view (``dicom-adapter jobs``) and tests use it; it never commits and never
joins a group, so it cannot disturb a running submitter. Thin aiokafka shell.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.errors import BrokerError
from streams.events import Envelope, EventDecodeError, decode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One decoded event with where it sits on the topic."""

    partition: int
    offset: int
    key: str
    envelope: Envelope


async def replay(
    bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0
) -> list[LedgerRecord]:
    """Every decodable event of ``topic``, in offset order per partition.

    Undecodable records are skipped with a warning. Raises :class:`BrokerError` when
    Kafka cannot be reached, the topic does not exist, or reading stalls for
    ``timeout_s`` seconds.
    """
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
    try:
        partitions = await asyncio.wait_for(_partitions(bootstrap_servers, topic), timeout_s)
        return await asyncio.wait_for(_read_all(consumer, topic, partitions), timeout_s)
    except TimeoutError:
        raise BrokerError(
            f"reading {topic} from {bootstrap_servers} did not finish in {timeout_s:g} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} failed: {exc}") from exc
    finally:
        await consumer.stop()


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """Partition ids of ``topic`` from a fresh metadata request (the consumer's own
    metadata only covers topics it was asked about before)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="dicom-adapter")
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [int(p["partition"]) for p in described.get("partitions", [])]
    if described.get("error_code", 0) != 0 or not partitions:
        raise BrokerError(
            f"topic {topic} does not exist; check --kafka and kafka.topic_prefix "
            "(or start an adapter role, which creates it)"
        )
    return partitions


async def _read_all(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[int]
) -> list[LedgerRecord]:
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    await consumer.seek_to_beginning(*tps)
    out: list[LedgerRecord] = []
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending:
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if not pending:
            break
        batch = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset >= ends[tp]:
                    continue
                try:
                    env = decode(rec.value or b"")
                except EventDecodeError as exc:
                    log.warning(
                        "skipping record %s[%d]@%d: %s", topic, tp.partition, rec.offset, exc
                    )
                    continue
                key = (rec.key or b"").decode("utf-8", "replace")
                out.append(LedgerRecord(tp.partition, rec.offset, key, env))
    return out
