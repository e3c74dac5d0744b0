"""Kafka plumbing: clients, topics, the publisher, the consumer-group shell and readers."""

from streams.kafka.clients import Connection, KafkaConnection, connection
from streams.kafka.commits import CommitTracker, HeldOffsets
from streams.kafka.follower import LogFollower, LogHandler, committable_offset
from streams.kafka.publisher import (
    EventPublisher,
    Publisher,
    partition_for,
    publish_until_acked,
)
from streams.kafka.reader import END, LogReader, read_to_end, read_topic
from streams.kafka.records import BatchEnd, Record
from streams.kafka.source import KafkaSource
from streams.kafka.topics import (
    TopicNames,
    ensure_adapter_topics,
    ensure_topics,
    rekeyed_topic,
    rekeyed_topic_configs,
    topic_names,
)

__all__ = [
    "END",
    "BatchEnd",
    "CommitTracker",
    "Connection",
    "EventPublisher",
    "HeldOffsets",
    "KafkaConnection",
    "KafkaSource",
    "LogFollower",
    "LogHandler",
    "LogReader",
    "Publisher",
    "Record",
    "TopicNames",
    "committable_offset",
    "connection",
    "ensure_adapter_topics",
    "ensure_topics",
    "partition_for",
    "publish_until_acked",
    "read_to_end",
    "read_topic",
    "rekeyed_topic",
    "rekeyed_topic_configs",
    "topic_names",
]
