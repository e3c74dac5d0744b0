"""Local brokers for development, tests and the all-in-one ``run``.

Apache Kafka in KRaft mode from Maven jars (:class:`KafkaBroker`, jars fetched by
:func:`fetch_kafka_jars`), or the memory-only Tansu fallback (:class:`TansuBroker`);
:func:`start_embedded_broker` picks the best one available.
"""

from streams.broker.base import LocalBroker, free_port, is_listening
from streams.broker.embedded import select_embedded_broker, start_embedded_broker
from streams.broker.jars import (
    KAFKA_VERSION,
    fetch_kafka_jars,
    is_kafka_version,
    jars_present,
    kafka_libs_dir,
    kafka_version_of,
)
from streams.broker.kafka import KafkaBroker, new_cluster_id, recorded_address
from streams.broker.ready import describe_cluster
from streams.broker.tansu import TansuBroker, find_tansu_binary

__all__ = [
    "KAFKA_VERSION",
    "KafkaBroker",
    "LocalBroker",
    "TansuBroker",
    "describe_cluster",
    "fetch_kafka_jars",
    "find_tansu_binary",
    "free_port",
    "is_kafka_version",
    "is_listening",
    "jars_present",
    "kafka_libs_dir",
    "kafka_version_of",
    "new_cluster_id",
    "recorded_address",
    "select_embedded_broker",
    "start_embedded_broker",
]
