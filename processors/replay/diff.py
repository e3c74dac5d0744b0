"""What a replay changes against the ledger: groups added, removed, changed, and the
instances that moved (pure).

A group is named by its first input (the record that opened it): each input belongs to
exactly one group on each side, so the first input identifies a group on its side, and
the same first input on both sides is "the same group". Job ids derive from it too
(``jobnames.job_id``), so an unchanged group keeps its job ids. An instance *moved*
when the group holding its input on one side is not the group holding it on the other
(``None`` on a side: in no group there -- outside the range, ignored, or not yet
closed by the ledger).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.jobnames import group_id
from streams.events import GroupClosed, InputOffset


@dataclass(frozen=True, slots=True)
class Move:
    """One input whose group differs: ``before`` (ledger) and ``after`` (replay) are
    group ids, ``None`` where no group holds it."""

    input: InputOffset
    sop_instance_uid: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class GroupDiff:
    """Group ids by change, and every move (in input order)."""

    unchanged: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    added: tuple[str, ...]
    moves: tuple[Move, ...]


def _gid(record: GroupClosed) -> str:
    first = record.inputs[0]
    return group_id(record.ae_title, first.partition, first.offset)


def _owners(
    groups: Iterable[GroupClosed],
) -> tuple[dict[str, frozenset[InputOffset]], dict[InputOffset, str]]:
    members: dict[str, frozenset[InputOffset]] = {}
    owner: dict[InputOffset, str] = {}
    for record in groups:
        if not record.inputs:
            continue
        gid = _gid(record)
        members[gid] = frozenset(record.inputs)
        for item in record.inputs:
            owner[item] = gid
    return members, owner


def diff_groups(
    ledger: Iterable[GroupClosed],
    replayed: Iterable[GroupClosed],
    sop_at: Mapping[InputOffset, str] | None = None,
) -> GroupDiff:
    """Compare the ledger's groups with the replay's; ``sop_at`` names each input's
    SOP Instance UID for the moves (``""`` when unknown)."""
    before, before_owner = _owners(ledger)
    after, after_owner = _owners(replayed)
    unchanged = tuple(sorted(g for g in before.keys() & after.keys() if before[g] == after[g]))
    changed = tuple(sorted(g for g in before.keys() & after.keys() if before[g] != after[g]))
    removed = tuple(sorted(before.keys() - after.keys()))
    added = tuple(sorted(after.keys() - before.keys()))
    names = sop_at or {}
    moves = tuple(
        Move(item, names.get(item, ""), before_owner.get(item), after_owner.get(item))
        for item in sorted(before_owner.keys() | after_owner.keys(), key=_position)
        if before_owner.get(item) != after_owner.get(item)
    )
    return GroupDiff(unchanged, changed, removed, added, moves)


def _position(item: InputOffset) -> tuple[int, int]:
    return item.partition, item.offset
