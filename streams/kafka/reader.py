"""Read partitions of a topic from given offsets to their current end (no consumer group).

The one helper for "read partition P of topic T from offset X to the end": rebuilding
state from a log on assignment (the processors read the jobs ledger this way), audits
and tests. It never joins a group and never commits, so it cannot disturb consumers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.errors import BrokerError
from streams.events import EventDecodeError
from streams.kafka.records import Record, decode_message

log = logging.getLogger(__name__)

_BATCH = 5000


@dataclass(frozen=True, slots=True)
class LogSlice:
    """What :func:`read_to_end` read: the records, and each partition's end offset (the
    offset the next record will get) as of the read."""

    records: list[Record] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)


async def read_to_end(
    bootstrap_servers: str,
    topic: str,
    starts: Mapping[int, int | None],
    *,
    client_id: str = "dicom-adapter-reader",
    timeout_s: float = 30.0,
) -> LogSlice:
    """Every decodable record of ``topic`` on the partitions of ``starts``, from
    ``starts[p]`` (``None``: the beginning of the partition) up to its end offset at the
    time of the call; in offset order per partition.

    A start below the log start (retention) reads from the log start; one beyond the
    end reads nothing (and is logged: the topic was probably re-created). Undecodable
    records are skipped with a warning. Raises :class:`BrokerError` when Kafka cannot
    be reached or reading does not finish within ``timeout_s``.
    """
    if not starts:
        return LogSlice()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            try:
                return await _read(consumer, topic, starts)
            finally:
                await consumer.stop()
    except TimeoutError:
        raise BrokerError(
            f"reading {topic} partitions {sorted(starts)} from {bootstrap_servers} did not "
            f"finish within {timeout_s:g} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} from {bootstrap_servers} failed: {exc}") from exc


async def _read(
    consumer: AIOKafkaConsumer, topic: str, starts: Mapping[int, int | None]
) -> LogSlice:
    tps = [TopicPartition(topic, p) for p in sorted(starts)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    begins = await consumer.beginning_offsets(tps)
    pending: set[TopicPartition] = set()
    for tp in tps:
        wanted = starts[tp.partition]
        start = begins[tp] if wanted is None else max(wanted, begins[tp])
        if start > ends[tp]:
            log.warning(
                "%s[%d]: stored position %d is beyond the end (%d); was the topic re-created?",
                topic, tp.partition, start, ends[tp],
            )  # fmt: skip
        if start < ends[tp]:
            consumer.seek(tp, start)
            pending.add(tp)
    out: list[Record] = []
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=500, max_records=_BATCH)
        for tp, messages in batch.items():
            end = ends[tp]
            for msg in messages:
                if msg.offset >= end:
                    continue
                try:
                    out.append(decode_message(topic, tp.partition, msg))
                except EventDecodeError as exc:
                    log.warning(
                        "skipping record %s[%d]@%d: %s", topic, tp.partition, msg.offset, exc
                    )
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return LogSlice(out, {tp.partition: int(ends[tp]) for tp in tps})
