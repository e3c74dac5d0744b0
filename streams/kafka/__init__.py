"""Kafka plumbing: topics, the event publisher, and the consumer → Observable bridge."""

from streams.kafka.commits import CommitTracker
from streams.kafka.observable import KafkaSource, PartitionsCallback
from streams.kafka.publisher import EventPublisher
from streams.kafka.records import BatchEnd, PartitionProgress, Record
from streams.kafka.topics import TopicNames, ensure_topics, partition_counts, topic_names

__all__ = [
    "BatchEnd",
    "CommitTracker",
    "EventPublisher",
    "KafkaSource",
    "PartitionProgress",
    "PartitionsCallback",
    "Record",
    "TopicNames",
    "ensure_topics",
    "partition_counts",
    "topic_names",
]
