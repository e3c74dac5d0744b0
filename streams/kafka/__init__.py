"""Kafka plumbing: topics, the event publisher, and the consumer → Observable bridge."""

from streams.kafka.commits import CommitTracker
from streams.kafka.observable import CommitMetadata, KafkaSource, PartitionsCallback, Throttle
from streams.kafka.publisher import EventPublisher
from streams.kafka.reader import LogSlice, read_to_end
from streams.kafka.records import BatchEnd, PartitionProgress, Record, decode_message
from streams.kafka.topics import TopicNames, ensure_topics, partition_counts, topic_names

__all__ = [
    "BatchEnd",
    "CommitMetadata",
    "CommitTracker",
    "EventPublisher",
    "KafkaSource",
    "LogSlice",
    "PartitionProgress",
    "PartitionsCallback",
    "Record",
    "Throttle",
    "TopicNames",
    "decode_message",
    "ensure_topics",
    "partition_counts",
    "read_to_end",
    "topic_names",
]
