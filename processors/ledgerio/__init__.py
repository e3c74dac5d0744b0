"""Kafka plumbing for the jobs ledger: follow it as a group from the beginning, replay it.

A thin aiokafka shell kept apart from the pure cores; events are written with
:class:`streams.kafka.EventPublisher`. The follower belongs in ``streams.kafka`` once
``KafkaSource`` can replay assigned partitions from the beginning.
"""

from processors.ledgerio.follower import LedgerFollower, LedgerHandler
from processors.ledgerio.publish import Publisher
from processors.ledgerio.replay import LedgerRecord, replay

__all__ = [
    "LedgerFollower",
    "LedgerHandler",
    "LedgerRecord",
    "Publisher",
    "replay",
]
