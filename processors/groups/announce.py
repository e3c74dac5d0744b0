"""When an owner says its open groups again: pure bookkeeping, time is an argument.

A partition's list is said when it changed (a group opened, grew, closed or its
deadline moved), when the partition is newly owned here (so a new owner overwrites
its predecessor's list at once, even with nothing open), and every ``keepalive_ms``
otherwise (readers tell a live owner from a dead one by it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from processors.groups.view import KEEPALIVE_MS
from streams.events import GroupsOpen, OpenGroupInfo

#: Groups one record holds at most (a record stays well below Kafka's 1 MB default).
MAX_GROUPS_PER_RECORD = 2_000

Where = tuple[str, str, int]  # (AE title, topic, partition)
Signature = tuple[int, tuple[tuple[str, int, int], ...]]


class Listing(NamedTuple):
    """The first open groups of a partition (at most what one record holds) and how
    many are open in all."""

    groups: Sequence[OpenGroupInfo]
    total: int

    @classmethod
    def of(cls, groups: Sequence[OpenGroupInfo]) -> Listing:
        """A listing of every open group."""
        return cls(groups, len(groups))


def signature(listing: Listing) -> Signature:
    """What a reader would see change: the count, the ids, sizes and deadlines."""
    return listing.total, tuple((g.group_id, g.instances, g.deadline) for g in listing.groups)


@dataclass
class Announcements:
    """The last list said per partition, to decide what to say next."""

    owner: str
    keepalive_ms: int = KEEPALIVE_MS
    max_groups: int = MAX_GROUPS_PER_RECORD
    _said: dict[Where, tuple[Signature, int, Listing]] = field(default_factory=dict)
    _given: dict[Where, Listing] = field(default_factory=dict)

    def due(self, now_ms: int, current: Mapping[Where, Listing]) -> list[GroupsOpen]:
        """The records to write now for the partitions owned here (``current``, each
        listing with at least :attr:`max_groups` groups if that many are open); a
        partition no longer owned is forgotten (its next owner says it)."""
        out: list[GroupsOpen] = []
        for where, listing in current.items():
            said = self._said.get(where)
            if (
                said is not None
                and now_ms - said[1] < self.keepalive_ms
                and (said[2] is listing or said[0] == signature(listing))
            ):
                continue  # the very listing said last time (cheap), or an equal one
            ae_title, topic, partition = where
            self._given[where] = listing
            kept = tuple(listing.groups[: self.max_groups])
            out.append(
                GroupsOpen(
                    ae_title, topic, partition, self.owner, now_ms, kept, listing.total - len(kept)
                )
            )
        self.forget(w for w in self._said if w not in current)
        return out

    def said(self, records: Iterable[GroupsOpen]) -> None:
        """``records`` were acknowledged by Kafka."""
        for r in records:
            where = (r.ae_title, r.topic, r.partition)
            given = self._given.pop(where, None) or Listing(r.groups, len(r.groups) + r.truncated)
            self._said[where] = (signature(given), r.published_at, given)

    def forget(self, where: Iterable[Where]) -> None:
        for w in list(where):
            self._said.pop(w, None)
