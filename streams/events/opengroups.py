"""``groups.open``: what one processor holds open on one partition (issue 15).

Topic ``<prefix>.groups`` (compacted), key ``<AE title>/<topic>/<partition>``: the
owner of an instances (or rekeyed) partition says, whenever its open groups change and
every few seconds, the whole list of the AE title's open groups on that partition. The
latest record per key is the state, so a new owner (after a rebalance or a crash)
overwrites its predecessor's view and a reader folds the topic without any per-group
tombstones. ``group_key`` may be a Patient ID: readers hide it like ``group.closed``'s
(``--show-phi``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUPS_OPEN = "groups.open"


@dataclass(frozen=True, slots=True)
class OpenGroupInfo:
    """One open group: ``group_id`` is stable while it is open (uuid5 of AE title,
    partition and first input), ``deadline`` when it closes unless more arrive (bus
    time, epoch ms) and ``due_reason`` why (``timeout`` or ``max_age``)."""

    group_id: str
    group_by: str
    group_key: str
    instances: int
    first_received_at: int
    last_received_at: int
    deadline: int
    due_reason: str = "timeout"


@dataclass(frozen=True, slots=True)
class GroupsOpen:
    """The open groups of ``ae_title`` on ``topic[partition]``, said by ``owner`` at
    ``published_at`` (its wall clock, epoch ms). ``truncated`` groups more than the
    record holds were left out (the oldest are kept)."""

    ae_title: str
    topic: str
    partition: int
    owner: str
    published_at: int
    groups: tuple[OpenGroupInfo, ...] = ()
    truncated: int = 0

    @property
    def key(self) -> str:
        """The record key: one per AE title and partition (compaction keeps the last)."""
        return groups_key(self.ae_title, self.topic, self.partition)


def groups_key(ae_title: str, topic: str, partition: int) -> str:
    """``<AE title>/<topic>/<partition>``."""
    return f"{ae_title}/{topic}/{partition}"


def groups_open(d: Mapping[str, Any]) -> GroupsOpen:
    """``groups.open`` data."""
    return GroupsOpen(
        ae_title=d["ae_title"],
        topic=d["topic"],
        partition=d["partition"],
        owner=d.get("owner", ""),
        published_at=d["published_at"],
        groups=tuple(
            OpenGroupInfo(
                group_id=g["group_id"],
                group_by=g.get("group_by", ""),
                group_key=g.get("group_key", ""),
                instances=g["instances"],
                first_received_at=g["first_received_at"],
                last_received_at=g["last_received_at"],
                deadline=g["deadline"],
                due_reason=g.get("due_reason", "timeout"),
            )
            for g in d.get("groups", ())
        ),
        truncated=d.get("truncated", 0),
    )
