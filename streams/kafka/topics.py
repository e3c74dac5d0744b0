"""Topic names and explicit topic creation (never rely on broker auto-create)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from streams.config import KafkaConfig
from streams.errors import BrokerError, ConfigError
from streams.kafka.clients import Connection, connection

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


def rekeyed_topic_configs() -> dict[str, str]:
    """A rekeyed topic keeps each copy's timestamp: the instance's log time."""
    return {"message.timestamp.type": "CreateTime"}


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
    """Topic-level settings given at creation, per topic.

    The instances topic is stamped by the broker (``LogAppendTime``): one clock per
    partition, whatever the senders' clocks say (docs/processing.md, "Time"). The
    sources topic keeps the last heartbeat of each source (compacted), the groups topic
    the last list of open groups of each AE title and partition (compacted often: it
    is re-said every few seconds).
    """
    names = topic_names(kafka.topic_prefix)
    return {
        names.instances: {"message.timestamp.type": "LogAppendTime"},
        names.sources: {
            "cleanup.policy": "compact",
            "segment.ms": "3600000",
            "message.timestamp.type": "LogAppendTime",
        },
        names.groups: {
            "cleanup.policy": "compact",
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
        },
    }


async def ensure_adapter_topics(
    kafka: Connection, config: KafkaConfig, *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Create the adapter's topics (:func:`adapter_topics`) if missing; returns each
    topic's actual partition count (see :func:`ensure_topics`)."""
    return await ensure_topics(
        kafka,
        adapter_topics(config),
        config.replication_factor,
        configs=adapter_topic_configs(config),
        timeout_s=timeout_s,
    )


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
