"""Open groups as the bus says them: pure folding of ``groups.open`` records.

Every owner of a partition says its open groups there (:mod:`processors.roles.announce`);
the latest record per AE title and partition is the state (the topic is compacted by
that key). A record whose owner has not spoken for ``stale_after_ms`` is still shown
-- the groups are still open in the log, the next owner re-forms them -- but marked
``stale``: its owner stopped or died and nobody has taken the partition over yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.redact import redact_data
from streams.events import Envelope, GroupsOpen, OpenGroupInfo

#: How often an owner re-says an unchanged list (``keepalive``) and when a list whose
#: owner fell silent counts as stale.
KEEPALIVE_MS = 5_000
STALE_AFTER_MS = 3 * KEEPALIVE_MS


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One open group with where it lives and who owns it."""

    ae_title: str
    topic: str
    partition: int
    owner: str
    published_at: int
    stale: bool
    group: OpenGroupInfo

    @property
    def group_id(self) -> str:
        return self.group.group_id


def latest(envelopes: Iterable[Envelope]) -> dict[str, GroupsOpen]:
    """The latest ``groups.open`` per key, records in log order (others are skipped)."""
    out: dict[str, GroupsOpen] = {}
    for env in envelopes:
        data = env.data
        if isinstance(data, GroupsOpen):
            out[data.key] = data
    return out


def rows(
    snapshots: Mapping[str, GroupsOpen],
    now_ms: int,
    *,
    ae_title: str | None = None,
    stale_after_ms: int = STALE_AFTER_MS,
) -> list[GroupRow]:
    """Every open group (of ``ae_title`` when given), oldest first; each group once."""
    out: dict[str, GroupRow] = {}
    for snap in snapshots.values():
        if ae_title is not None and snap.ae_title != ae_title:
            continue
        stale = now_ms - snap.published_at > stale_after_ms
        for group in snap.groups:
            row = GroupRow(
                snap.ae_title, snap.topic, snap.partition, snap.owner, snap.published_at,
                stale, group,
            )  # fmt: skip
            seen = out.get(group.group_id)
            if seen is None or seen.published_at < row.published_at:
                out[group.group_id] = row
    return sorted(out.values(), key=lambda r: (r.group.first_received_at, r.group_id))


def find(found: Iterable[GroupRow], group_id: str) -> GroupRow | None:
    """The row of ``group_id`` or ``None``."""
    return next((r for r in found if r.group_id == group_id), None)


def row_fields(row: GroupRow, now_ms: int, *, show_phi: bool = False) -> dict[str, Any]:
    """The JSON object of one group (``groups list --json``, ``GET /groups``); the
    group key is hidden unless ``show_phi`` (it may be a Patient ID)."""
    g = row.group
    fields: dict[str, Any] = {
        "group_id": g.group_id,
        "ae_title": row.ae_title,
        "group_by": g.group_by,
        "group_key": g.group_key,
        "instances": g.instances,
        "first_received_at": g.first_received_at,
        "last_received_at": g.last_received_at,
        "deadline": g.deadline,
        "due_reason": g.due_reason,
        "age_ms": max(0, now_ms - g.first_received_at),
        "due_in_ms": g.deadline - now_ms,
        "owner": row.owner,
        "topic": row.topic,
        "partition": row.partition,
        "stale": row.stale,
    }
    return fields if show_phi else redact_data(fields)
