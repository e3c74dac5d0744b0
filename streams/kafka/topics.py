"""Topic names and explicit topic creation (never rely on broker auto-create)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from streams.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC = 249
_TOPIC_ALREADY_EXISTS = 36
_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The adapter's topics for one prefix (DESIGN.md §3.3)."""

    instances: str
    jobs: str

    def all(self) -> tuple[str, str]:
        """Both names, instances first."""
        return (self.instances, self.jobs)


def topic_names(prefix: str) -> TopicNames:
    """``<prefix>.instances`` and ``<prefix>.jobs``; a bad prefix is a :class:`ConfigError`."""
    longest = f"{prefix}.instances"
    if not prefix or not _LEGAL.match(prefix) or len(longest) > _MAX_TOPIC:
        raise ConfigError(
            [
                f"kafka.topic_prefix: {prefix!r} is not a valid Kafka topic prefix; use letters, "
                f"digits, '.', '_' or '-' (at most {_MAX_TOPIC - len('.instances')} characters)"
            ]
        )
    return TopicNames(instances=longest, jobs=f"{prefix}.jobs")


async def ensure_topics(
    bootstrap_servers: str,
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
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="dicom-adapter-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await _create(admin, names_with_partitions, replication_factor, configs or {})
            return await _wait_for_leaders(admin, names_with_partitions)
    except TimeoutError:
        raise BrokerError(
            f"topics {', '.join(names_with_partitions)} were not ready at {bootstrap_servers} "
            f"within {timeout_s:.0f} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics at {bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()


async def partition_counts(
    bootstrap_servers: str, names: Iterable[str], *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Partition counts of those of ``names`` that exist (missing ones are left out).

    Asks for the metadata of *all* topics, so a broker that auto-creates topics does
    not create the missing ones just because they were asked about.
    """
    wanted = set(names)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="dicom-adapter-admin",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            described = await admin.describe_topics()
    except TimeoutError:
        raise BrokerError(
            f"no metadata from {bootstrap_servers} within {timeout_s:.0f} s"
        ) from None
    except KafkaError as exc:
        raise BrokerError(f"cannot read topics at {bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    return {
        topic["topic"]: len(topic.get("partitions") or [])
        for topic in described
        if topic["topic"] in wanted and not topic.get("error_code")
    }


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
