"""The Kafka ACLs each role needs on a bus with an authorizer (docs/security.md).

One table for the documentation and for the secure test broker, which runs every role
with only these (so a missing ACL fails a test, not a hospital's deployment). Every
role creates the adapter's topics at start if they are missing and checks the settings
of existing ones, hence ``Create``, ``Describe`` and ``DescribeConfigs`` on the topic
prefix; drop ``Create`` when an operator creates the topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.config import KafkaConfig

Resource = Literal["topic", "group", "cluster", "transactional_id"]
Pattern = Literal["literal", "prefixed"]

#: The roles, as users of the secure broker; ``cli`` is ``events``, ``jobs`` and
#: ``export send``.
ROLES: tuple[str, ...] = ("scp", "process", "submit", "export", "cli")


@dataclass(frozen=True, slots=True)
class Acl:
    """Allow ``operations`` on one resource (a name, or every name with a prefix)."""

    resource: Resource
    name: str
    operations: tuple[str, ...]
    pattern: Pattern = "literal"

    def __str__(self) -> str:
        where = f"{self.resource} {self.name}" + ("*" if self.pattern == "prefixed" else "")
        return f"{where}: {', '.join(self.operations)}"


def role_acls(role: str, kafka: KafkaConfig) -> tuple[Acl, ...]:
    """What ``role`` needs on the bus of ``kafka`` (its topic prefix)."""
    prefix = kafka.topic_prefix
    instances, jobs = kafka.instances_topic, kafka.jobs_topic
    sources, exports = f"{prefix}.sources", f"{prefix}.exports"
    # DescribeConfigs: every role checks the settings of existing topics at start.
    create = Acl("topic", f"{prefix}.", ("Create", "Describe", "DescribeConfigs"), "prefixed")
    groups = f"{prefix}.groups"
    table: dict[str, tuple[Acl, ...]] = {
        # Instances, and heartbeats saying what the SCP still owes (docs/processing.md).
        "scp": (create, Acl("topic", instances, ("Write",)), Acl("topic", sources, ("Write",))),
        "process": (
            create,
            # Reads instances and writes the clock ticks of the partitions it owns.
            Acl("topic", instances, ("Read", "Write")),
            Acl("topic", jobs, ("Read", "Write")),
            Acl("topic", sources, ("Read", "Write")),
            # Says its open groups; reads them back for GET /groups and /ui.
            Acl("topic", groups, ("Read", "Write")),
            # Repartitioned AE titles: copies in transactions, read back by the lanes.
            Acl("topic", f"{prefix}.rekeyed.", ("Read", "Write"), "prefixed"),
            Acl("group", f"{prefix}.processors.", ("Read",), "prefixed"),
            Acl("group", f"{prefix}.repartition.", ("Read", "Describe"), "prefixed"),
            Acl("transactional_id", f"{prefix}.repartition.", ("Write", "Describe"), "prefixed"),
        ),
        "submit": (
            create,
            Acl("topic", jobs, ("Read", "Write")),
            # The orphan sweeper looks for the events of old unreferenced files.
            Acl("topic", instances, ("Read",)),
            Acl("group", f"{prefix}.submitter", ("Read",)),
            Acl("group", f"{prefix}.reclaimer", ("Read",)),
        ),
        "export": (
            create,
            Acl("topic", exports, ("Read", "Write")),
            Acl("group", f"{prefix}.exporter", ("Read",)),
        ),
        "cli": (
            # Write on instances and rekeyed topics: groups close (group.close_requested).
            Acl("topic", instances, ("Read", "Write")),
            Acl("topic", f"{prefix}.rekeyed.", ("Write",), "prefixed"),
            Acl("topic", jobs, ("Read", "Write")),
            Acl("topic", sources, ("Read",)),
            Acl("topic", groups, ("Read",)),
            Acl("topic", exports, ("Read", "Write")),
        ),
    }
    if role not in table:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return table[role]
