"""Topic names and explicit topic creation (never rely on broker auto-create)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams.config import KafkaConfig
from streams.errors import BrokerError, ConfigError
from streams.kafka.clients import Connection, connection
from streams.kafka.topicconfig import check_topic_configs, wanted_configs

log = logging.getLogger(__name__)

_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC = 249
_TOPIC_ALREADY_EXISTS = 36
_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The adapter's topics for one prefix (DESIGN.md §3.3; exports: docs/export.md)."""

    instances: str
    jobs: str
    sources: str
    exports: str
    groups: str

    def all(self) -> tuple[str, ...]:
        """Every name, instances first."""
        return (self.instances, self.jobs, self.sources, self.exports, self.groups)


def topic_names(prefix: str) -> TopicNames:
    """``<prefix>.instances``, ``.jobs``, ``.sources``, ``.exports`` and ``.groups``; a bad
    prefix is a :class:`ConfigError`."""
    longest = f"{prefix}.instances"
    if not prefix or not _LEGAL.match(prefix) or len(longest) > _MAX_TOPIC:
        raise ConfigError(
            [
                f"kafka.topic_prefix: {prefix!r} is not a valid Kafka topic prefix; use letters, "
                f"digits, '.', '_' or '-' (at most {_MAX_TOPIC - len('.instances')} characters)"
            ]
        )
    return TopicNames(
        instances=longest,
        jobs=f"{prefix}.jobs",
        sources=f"{prefix}.sources",
        exports=f"{prefix}.exports",
        groups=f"{prefix}.groups",
    )


def rekeyed_topic(prefix: str, ae_title: str) -> str:
    """``<prefix>.rekeyed.<AE title>``: one AE title's instances keyed by its group key
    (docs/processing.md, "Repartitioning"). An AE title may hold characters a topic
    name cannot (PS3.5 §6.2: any of the default repertoire but backslash); they become
    ``_`` and a short hash of the title keeps two such titles apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", ae_title)
    if safe != ae_title:
        safe += "-" + hashlib.sha256(ae_title.encode()).hexdigest()[:8]
    return f"{prefix}.rekeyed.{safe}"


def rekeyed_topic_configs(kafka: KafkaConfig | None = None) -> dict[str, str]:
    """A rekeyed topic keeps each copy's timestamp: the instance's log time; with
    ``kafka``, the instances topic's retention, cleanup and in-sync replicas too."""
    settings = {"message.timestamp.type": "CreateTime"}
    if kafka is not None:
        names = topic_names(kafka.topic_prefix)
        instances = adapter_topic_configs(kafka)[names.instances]
        settings = {**instances, **settings}
    return settings


def adapter_topics(kafka: KafkaConfig) -> dict[str, int]:
    """The adapter's topics with their partition counts: the one place that knows them.

    ``<prefix>.sources`` (heartbeats, keyed by source) has one partition: every
    processor reads all of it; so has ``<prefix>.groups`` (open groups, one record per
    AE title and partition): every reader reads all of it.
    """
    names = topic_names(kafka.topic_prefix)
    return {
        names.instances: kafka.partitions,
        names.jobs: kafka.partitions,
        names.sources: 1,
        names.exports: kafka.partitions,
        names.groups: 1,
    }


def adapter_topic_configs(kafka: KafkaConfig) -> dict[str, dict[str, str]]:
    """Topic-level settings given at creation, per topic (see
    :func:`~streams.kafka.topicconfig.wanted_configs`)."""
    names = topic_names(kafka.topic_prefix)
    return wanted_configs(
        kafka, names.instances, names.jobs, names.sources, names.exports, groups=names.groups
    )


def retention_settings(kafka: KafkaConfig) -> dict[str, str]:
    """The config key of each log topic's retention (named in findings)."""
    names = topic_names(kafka.topic_prefix)
    return {
        names.instances: "kafka.retention.instances_hours",
        names.jobs: "kafka.retention.jobs_hours",
        names.exports: "kafka.retention.exports_hours",
    }


async def ensure_adapter_topics(
    kafka: Connection,
    config: KafkaConfig,
    *,
    needs_ms: Mapping[str, int] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create the adapter's topics (:func:`adapter_topics`) if missing, then check the
    settings of those that existed; returns each topic's actual partition count (see
    :func:`ensure_topics`).

    A setting that only weakens a promise is logged as a WARNING naming the topic, the
    key and the fix; one that breaks the adapter (a retention shorter than ``needs_ms``
    of the topic, a compacted ledger) raises :class:`ConfigError` listing them all.
    """
    counts = await ensure_topics(
        kafka,
        adapter_topics(config),
        config.replication_factor,
        configs=adapter_topic_configs(config),
        timeout_s=timeout_s,
    )
    wanted = adapter_topic_configs(config)
    actual = await describe_topic_configs(kafka, list(wanted), timeout_s=timeout_s)
    for name in wanted.keys() - actual.keys():
        log.warning(
            "cannot read the settings of topic %s (grant DescribeConfigs on it); they are "
            "not checked",
            name,
        )
    findings = check_topic_configs(actual, wanted, needs_ms or {}, retention_settings(config))
    for finding in findings:
        if not finding.fatal:
            log.warning("%s", finding.message())
    fatal = [f.message() for f in findings if f.fatal]
    if fatal:
        raise ConfigError(fatal)
    return counts


async def describe_topic_configs(
    kafka: Connection, topics: Sequence[str], *, timeout_s: float = 30.0
) -> dict[str, dict[str, str]]:
    """``{topic: {key: value}}`` of every existing topic of ``topics`` as the broker
    describes it (its own settings and the broker defaults it inherits)."""
    kafka = connection(kafka)
    admin = kafka.admin(client_id="dicom-adapter-admin", request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
            )
    except TimeoutError:
        raise BrokerError(
            f"the settings of topics {', '.join(topics)} could not be read at {kafka} "
            f"within {timeout_s:.0f} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"cannot read topic settings at {kafka}: {exc}") from exc
    finally:
        await admin.close()
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:
            error, name, entries = resource[0], resource[3], resource[4]
            if error == 0:
                out[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return out


async def ensure_topics(
    kafka: Connection,
    names_with_partitions: Mapping[str, int],
    replication_factor: int = 1,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Create the topics that do not exist yet and wait until every partition has a leader.

    Existing topics are left alone (a different partition count is logged, never changed:
    keys would move between partitions). Returns each topic's actual partition count.
    Raises :class:`BrokerError` naming the topic when the broker refuses to create one.
    """
    if not names_with_partitions:
        return {}
    for name, partitions in names_with_partitions.items():
        if not _LEGAL.match(name) or len(name) > _MAX_TOPIC:
            raise ConfigError([f"topic {name!r} is not a valid Kafka topic name"])
        if partitions < 1:
            raise ConfigError([f"topic {name!r}: partitions must be at least 1, not {partitions}"])
    kafka = connection(kafka)
    admin = kafka.admin(client_id="dicom-adapter-admin", request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await _create(admin, names_with_partitions, replication_factor, configs or {})
            return await _wait_for_leaders(admin, names_with_partitions)
    except TimeoutError:
        raise BrokerError(
            f"topics {', '.join(names_with_partitions)} were not ready at {kafka} "
            f"within {timeout_s:.0f} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics at {kafka}: {exc}") from exc
    finally:
        await admin.close()


async def _create(
    admin: Any,
    wanted: Mapping[str, int],
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]],
) -> None:
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs=dict(configs.get(name, {})),
        )
        for name, partitions in wanted.items()
    ]
    await _controller_known(admin)
    response = await admin.create_topics(new)
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        if code == 0:
            log.info("created topic %s with %d partitions", name, wanted[name])
        elif code == _TOPIC_ALREADY_EXISTS:
            log.debug("topic %s already exists", name)
        else:
            raise BrokerError(
                f"the broker refused to create topic {name!r} "
                f"(error {code}: {message or 'no message'})"
            )


async def _controller_known(admin: Any) -> None:
    """Wait (within the caller's timeout) until the metadata names a controller.

    Right after a broker comes back from a pause (SIGSTOP, a long GC), it may answer
    metadata without a controller or any broker; aiokafka's ``create_topics`` then fails
    with an AttributeError (found by the chaos suite: a role restarted at that moment
    crashed). Refreshing the metadata until a controller is named avoids that.
    """
    client = admin._client
    while client.cluster.controller is None:
        await client.force_metadata_update()
        if client.cluster.controller is None:
            await asyncio.sleep(0.2)  # a broker that is coming back; ask again shortly


async def _wait_for_leaders(admin: Any, wanted: Mapping[str, int]) -> dict[str, int]:
    while True:
        described = await admin.describe_topics(list(wanted))
        counts: dict[str, int] = {}
        ready = True
        for topic in described:
            name = topic["topic"]
            partitions = topic.get("partitions") or []
            if topic.get("error_code") or not partitions:
                ready = False
                continue
            if any(p.get("leader", -1) < 0 or p.get("error_code") for p in partitions):
                ready = False
            counts[name] = len(partitions)
        if ready and set(counts) >= set(wanted):
            for name, count in counts.items():
                if count != wanted[name]:
                    log.warning(
                        "topic %s has %d partitions, configured %d; keeping %d (changing the "
                        "count would move keys between partitions)",
                        name,
                        count,
                        wanted[name],
                        count,
                    )
            return counts
        await asyncio.sleep(_POLL_S)
