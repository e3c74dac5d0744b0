"""The consumer's ``CommitTracker`` seen by partition number (``processors.base.OffsetHolder``)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from streams.kafka import CommitTracker


class PartitionHolds:
    """Holds and releases offsets of one topic in a ``CommitTracker[TopicPartition]``."""

    __slots__ = ("_tps", "topic", "tracker")

    def __init__(self, tracker: CommitTracker[TopicPartition], topic: str) -> None:
        self.tracker = tracker
        self.topic = topic
        self._tps: dict[int, TopicPartition] = {}

    def tp(self, partition: int) -> TopicPartition:
        """The (cached) ``TopicPartition`` of ``partition``."""
        tp = self._tps.get(partition)
        if tp is None:
            tp = self._tps[partition] = TopicPartition(self.topic, partition)
        return tp

    def hold(self, partition: int, offset: int) -> None:
        """Keep ``offset`` and everything after it on ``partition`` uncommitted."""
        self.tracker.hold(self.tp(partition), offset)

    def release(self, partition: int, offset: int) -> bool:
        """Drop one hold of ``offset``; ``False`` if it was not held (e.g. revoked since)."""
        return self.tracker.release(self.tp(partition), offset)
