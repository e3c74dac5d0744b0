"""Reading open groups off the bus and asking for a close (the CLI's and the API's
one copy).

A close is a ``group.close_requested`` written to the partition the group lives on
(the ``topic`` and ``partition`` its owner said), so it sits in the log after the
group's instances: whoever owns the partition -- now, after a rebalance, or replaying
after a crash -- meets it at the same place and closes the group with reason
``forced``, exactly once (docs/operations.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from processors.groups.view import GroupRow, find, latest, rows
from streams.events import GroupCloseRequested, GroupsOpen, envelope
from streams.kafka import Connection, EventPublisher, read_topic


async def load_snapshots(kafka: Connection, topic: str) -> dict[str, GroupsOpen]:
    """The latest ``groups.open`` per AE title and partition, read from ``topic``."""
    return latest(r.envelope for r in await read_topic(kafka, topic))


async def open_groups(
    kafka: Connection, topic: str, *, ae_title: str | None = None
) -> list[GroupRow]:
    """Every open group on the bus (of ``ae_title`` when given), oldest first."""
    return rows(await load_snapshots(kafka, topic), wall_ms(), ae_title=ae_title)


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    """What ``close`` did: ``requested`` (with the group), or not (``row`` is None:
    no open group has that id -- closed already, or never was)."""

    group_id: str
    row: GroupRow | None

    @property
    def requested(self) -> bool:
        return self.row is not None

    def message(self) -> str:
        """One line for the operator."""
        row = self.row
        if row is None:
            return (
                f"group {self.group_id} is not open (already closed, or no such group); "
                "nothing to do"
            )
        owner = f"owner {row.owner}" + (", stale: waiting for a new owner" if row.stale else "")
        return (
            f"close requested for group {self.group_id} of {row.ae_title} "
            f"({row.group.instances} instances, {owner}); it closes with reason forced"
        )


async def request_close(
    kafka: Connection,
    groups_topic: str,
    group_id: str,
    *,
    requested_by: str,
    reason: str = "",
    source: str = "dicom-adapter-groups",
) -> CloseOutcome:
    """Write ``group.close_requested`` for ``group_id`` where its instances are (acks=all);
    a group that is not open is a no-op."""
    row = find(await open_groups(kafka, groups_topic), group_id)
    if row is None:
        return CloseOutcome(group_id, None)
    request = GroupCloseRequested(group_id, row.ae_title, requested_by=requested_by, reason=reason)
    env = envelope(request, source=source, time_ms=wall_ms())
    async with EventPublisher(kafka, client_id=source) as publisher:
        await publisher.publish(
            row.topic, f"{row.ae_title}/group/{group_id}", env, partition=row.partition
        )
    return CloseOutcome(group_id, row)


def wall_ms() -> int:
    """Now, epoch ms (the reader's clock: ages and staleness are approximate)."""
    return int(time.time() * 1000)
