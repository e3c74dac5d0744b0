"""What the consumer bridge emits: decoded records and per-batch progress markers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka.structs import TopicPartition

from streams.events import Envelope, EventDecodeError, decode


class Record(msgspec.Struct, frozen=True):
    """One decoded event read from Kafka, with its position in the log.

    Not an event (those are frozen dataclasses, STYLE.md §6) but the consumer's wrapper
    around one: a frozen ``msgspec.Struct``, built in C. The frozen dataclass cost ~1 µs
    per record to build, ~4 % of a processor's CPU (docs/benchmarks.md, "round 4").
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp: int
    envelope: Envelope

    @property
    def tp(self) -> TopicPartition:
        """The record's ``TopicPartition``."""
        return TopicPartition(self.topic, self.partition)


def decode_message(topic: str, partition: int, msg: Any) -> Record:
    """The :class:`Record` of one aiokafka ``ConsumerRecord``; raises ``EventDecodeError``."""
    env = decode(msg.value if msg.value is not None else b"")
    key = msg.key.decode("utf-8", errors="replace") if msg.key is not None else None
    return Record(
        topic=topic,
        partition=partition,
        offset=msg.offset,
        key=key,
        timestamp=msg.timestamp,
        envelope=env,
    )


def decode_messages(
    topic: str,
    partition: int,
    messages: Sequence[Any],
    skip: Callable[[Any, EventDecodeError], None],
) -> list[Record]:
    """The :class:`Record` of each of one partition's ``ConsumerRecord`` s, in order;
    ``skip(msg, error)`` is told each one that does not decode (it is left out).

    :func:`decode_message` for a whole ``getmany`` list in one call: the consumer's hot
    path (one function call per record less, names bound once).
    """
    out: list[Record] = []
    append = out.append
    for msg in messages:
        value, key = msg.value, msg.key
        try:
            env = decode(value if value is not None else b"")
        except EventDecodeError as exc:
            skip(msg, exc)
            continue
        text = key.decode("utf-8", errors="replace") if key is not None else None
        append(Record(topic, partition, msg.offset, text, msg.timestamp, env))
    return out


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """Where the consumer stands on one partition after a batch.

    ``position`` is the next offset to be delivered, ``highwater`` the end of the log as
    of the last fetch (both ``None`` until the partition was fetched once).
    """

    topic: str
    partition: int
    position: int | None
    highwater: int | None

    @property
    def tp(self) -> TopicPartition:
        """The partition's ``TopicPartition``."""
        return TopicPartition(self.topic, self.partition)

    @property
    def caught_up(self) -> bool:
        """Everything in the log as of the last fetch has been delivered.

        A processor switches the partition's clock to wall time while this holds
        (DESIGN.md §4, "Windows are a function of the log").
        """
        return (
            self.position is not None
            and self.highwater is not None
            and self.position >= self.highwater
        )


@dataclass(frozen=True, slots=True)
class BatchEnd:
    """Emitted after every ``getmany`` round (also when it returned nothing).

    Gives windows a regular chance to sweep and tells which partitions are caught up.
    """

    records: int
    skipped: int
    partitions: tuple[PartitionProgress, ...]

    def progress(self, tp: TopicPartition) -> PartitionProgress | None:
        """The progress of ``tp`` (``None`` if it is not assigned)."""
        for entry in self.partitions:
            if entry.topic == tp.topic and entry.partition == tp.partition:
                return entry
        return None

    @property
    def all_caught_up(self) -> bool:
        """Every assigned partition is caught up (``False`` with no assignment)."""
        return bool(self.partitions) and all(p.caught_up for p in self.partitions)
