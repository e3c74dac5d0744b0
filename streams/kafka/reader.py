"""Reading topics without a consumer group: to their end, from any position, or following.

The one reader of "partition P of topic T from X (to the end)": rebuilding state from a
log on assignment (the processors read the jobs ledger this way), the cache rebuild,
the auditor's tools (``events``, ``jobs``) and tests. It never joins a group and never
commits, so it cannot disturb consumers.

Positions are an offset, :data:`BEGINNING` (``None``) or :data:`END`. An offset below
the log start (retention) reads from the log start; one beyond the end reads nothing
and is logged (the topic was probably re-created).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.errors import BrokerError
from streams.events import EventDecodeError
from streams.kafka.clients import Connection, connection
from streams.kafka.records import Record, decode_message
from streams.lifecycle import Service

log = logging.getLogger(__name__)

BEGINNING: Final = None
END: Final = "end"
Position = int | Literal["end"] | None
"""An offset, :data:`END`, or :data:`BEGINNING` (``None``)."""

_BATCH = 5000


@dataclass(frozen=True, slots=True)
class LogSlice:
    """What :func:`read_to_end` read: the records, and each partition's end offset (the
    offset the next record will get) as of the read."""

    records: list[Record] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)


Undecodable = Callable[[TopicPartition, int, EventDecodeError], None]


def _warn(tp: TopicPartition, offset: int, exc: EventDecodeError) -> None:
    # The error names what is wrong, never the record's content (it may hold PHI).
    log.warning("skipping record %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc)


class LogReader(Service):
    """A group-less consumer: ``async with LogReader(kafka) as reader`` inside the loop."""

    def __init__(self, kafka: Connection, *, client_id: str = "dicom-adapter-reader") -> None:
        self.kafka = connection(kafka)
        self.client_id = client_id
        self.ends: dict[TopicPartition, int] = {}
        self._consumer: Any = None

    async def start(self) -> None:
        """Connect; raises :class:`BrokerError` when Kafka cannot be reached."""
        if self._consumer is not None:
            return
        consumer = self.kafka.consumer(client_id=self.client_id, fetch_max_wait_ms=200)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise BrokerError(f"cannot reach Kafka at {self.kafka}: {exc}") from exc
        self._consumer = consumer

    async def stop(self) -> None:
        """Disconnect. Idempotent."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def partitions(self, topic: str) -> list[int]:
        """The partition ids of ``topic`` (``[]`` when it does not exist).

        Asks for the metadata of *all* topics, so a broker that auto-creates topics does
        not create a missing one just because it was asked about.
        """
        self._require()
        admin = self.kafka.admin(client_id=f"{self.client_id}-metadata")
        try:
            await admin.start()
            described = await admin.describe_topics()  # all topics: never auto-creates one
        except KafkaError as exc:
            raise BrokerError(f"cannot read topics at {self.kafka}: {exc}") from exc
        finally:
            await admin.close()
        for entry in described:
            if entry["topic"] == topic and not entry.get("error_code"):
                return sorted(int(p["partition"]) for p in entry.get("partitions") or ())
        return []

    async def offsets_at(
        self, topic: str, partitions: Iterable[int], time_ms: int
    ) -> dict[TopicPartition, Position]:
        """Per partition of ``topic``, the first offset whose record time is ``time_ms`` or
        later (:data:`END` when there is none): where to read from to see everything
        written since then."""
        consumer = self._require()
        tps = [TopicPartition(topic, p) for p in partitions]
        try:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, time_ms)))
        except KafkaError as exc:
            raise BrokerError(f"cannot look up offsets of {topic} by time: {exc}") from exc
        out: dict[TopicPartition, Position] = {}
        for tp in tps:
            hit = found.get(tp)
            out[tp] = END if hit is None else int(hit.offset)
        return out

    async def truncated_at(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """``{partition: time of its oldest record}`` for the partitions whose log no
        longer starts at offset 0 (retention deleted records older than that time)."""
        consumer = self._require()
        tps = [TopicPartition(topic, p) for p in partitions]
        try:
            begins = await consumer.beginning_offsets(tps)
            cut = [tp for tp in tps if int(begins[tp]) > 0]
            found = await consumer.offsets_for_times(dict.fromkeys(cut, 0)) if cut else {}
        except KafkaError as exc:
            raise BrokerError(f"cannot read the log start of {topic}: {exc}") from exc
        return {tp.partition: int(hit.timestamp) for tp, hit in found.items() if hit is not None}

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """``{partition: end offset}`` of ``topic`` now (``{}`` when it does not exist)."""
        consumer = self._require()
        tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
        if not tps:
            return {}
        try:
            ends = await consumer.end_offsets(tps)
        except KafkaError as exc:
            raise BrokerError(f"cannot read the end offsets of {topic}: {exc}") from exc
        return {tp.partition: int(end) for tp, end in ends.items()}

    def _require(self) -> Any:
        if self._consumer is None:
            raise BrokerError("LogReader is not started; use 'async with LogReader(...)'")
        return self._consumer

    async def batches(
        self,
        starts: Mapping[TopicPartition, Position],
        *,
        follow: bool = False,
        stall_s: float | None = None,
        on_undecodable: Undecodable = _warn,
    ) -> AsyncIterator[list[Record]]:
        """Decoded records of ``starts``' partitions from their positions, batch by batch,
        in offset order per partition.

        Without ``follow`` it stops at each partition's end as of the call; with it, it
        never stops. ``stall_s``: raise :class:`BrokerError` when nothing arrives for that
        long while records are still due. :attr:`ends` holds the end offsets read up to.
        """
        consumer = self._require()
        tps = sorted(starts)
        if not tps:
            return
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        self.ends = {tp: int(end) for tp, end in ends.items()}
        pending: set[TopicPartition] = set()
        for tp in tps:
            start = _resolve(tp, starts[tp], begins[tp], ends[tp])
            consumer.seek(tp, start)
            if follow or start < ends[tp]:
                pending.add(tp)
        loop = asyncio.get_running_loop()
        progress = loop.time()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=_BATCH)
            out: list[Record] = []
            for tp, messages in batch.items():
                end = ends[tp]
                for msg in messages:
                    if not follow and msg.offset >= end:
                        continue
                    try:
                        out.append(decode_message(tp.topic, tp.partition, msg))
                    except EventDecodeError as exc:
                        on_undecodable(tp, msg.offset, exc)
            if batch:
                progress = loop.time()
            elif stall_s is not None and not follow and loop.time() - progress > stall_s:
                raise BrokerError(
                    f"reading {', '.join(sorted({tp.topic for tp in pending}))} stalled for "
                    f"{stall_s:g} s; check the broker"
                )
            if out:
                yield out
            if not follow:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)


def _resolve(tp: TopicPartition, wanted: Position, begin: int, end: int) -> int:
    if wanted is None:
        return int(begin)
    if wanted == END:
        return int(end)
    if wanted > end:
        log.warning(
            "%s[%d]: stored position %d is beyond the end (%d); was the topic re-created?",
            tp.topic, tp.partition, wanted, end,
        )  # fmt: skip
        return int(end)
    return max(int(wanted), int(begin))


async def read_to_end(
    kafka: Connection,
    topic: str,
    starts: Mapping[int, int | None],
    *,
    client_id: str = "dicom-adapter-reader",
    timeout_s: float = 30.0,
) -> LogSlice:
    """Every decodable record of ``topic`` on the partitions of ``starts``, from
    ``starts[p]`` (``None``: the beginning of the partition) up to its end offset at the
    time of the call; in offset order per partition.

    Raises :class:`BrokerError` when Kafka cannot be reached or reading does not finish
    within ``timeout_s``.
    """
    if not starts:
        return LogSlice()
    tps = {TopicPartition(topic, p): start for p, start in starts.items()}
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout_s), LogReader(kafka, client_id=client_id) as reader:
            async for batch in reader.batches(tps):
                records.extend(batch)
            ends = reader.ends
    except TimeoutError:
        raise BrokerError(
            f"reading {topic} partitions {sorted(starts)} from {kafka} did not finish within "
            f"{timeout_s:g} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} from {kafka} failed: {exc}") from exc
    return LogSlice(records, {tp.partition: int(end) for tp, end in ends.items()})


async def read_topic(
    kafka: Connection, topic: str, *, timeout_s: float = 30.0, client_id: str = "dicom-adapter"
) -> list[Record]:
    """Every decodable record of every partition of ``topic``, from the beginning to its
    end at the time of the call (in offset order per partition).

    Raises :class:`BrokerError` when Kafka cannot be reached, the topic does not exist,
    or reading does not finish within ``timeout_s``.
    """
    records: list[Record] = []
    try:
        async with asyncio.timeout(timeout_s), LogReader(kafka, client_id=client_id) as reader:
            partitions = await reader.partitions(topic)
            if not partitions:
                raise BrokerError(
                    f"topic {topic} does not exist; check --kafka and kafka.topic_prefix "
                    "(or start an adapter role, which creates it)"
                )
            async for batch in reader.batches(whole(topic, partitions)):
                records.extend(batch)
    except TimeoutError:
        raise BrokerError(
            f"reading {topic} from {kafka} did not finish in {timeout_s:g} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"reading {topic} failed: {exc}") from exc
    return records


def whole(topic: str, partitions: Iterable[int]) -> dict[TopicPartition, Position]:
    """Every partition of ``topic`` from its beginning."""
    return {TopicPartition(topic, p): BEGINNING for p in partitions}
