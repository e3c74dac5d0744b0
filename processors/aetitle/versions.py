"""Late arrivals as versions (``lateArrivals: amend``, issue 16) -- pure bookkeeping.

Instances that arrive after their group closed form a window of their own as always
(quiet ``timeout``); when it closes less than ``lateWindow`` after the previous version
of the same key closed (its first instance appended by then), it is written as
``group.updated``: version n+1 of that group with ALL instances (the earlier ones and
the added ones, one per SOP Instance UID, the last received), the added ones named, the
version it supersedes, and new jobs (ids from the added instances' first input, so
deterministic like every job id). Each version keeps its files for ``lateWindow`` after
it closed (``files_kept_until``): the next version lists them again.

Per partition, the latest version of each key is kept in close order, and dropped once
its ``lateWindow`` has passed: memory is bounded by the groups closed within one
``lateWindow``. This state lives in memory: after a restart or a rebalance within the
window a late instance forms a new group, as with ``new-group`` (docs/processing.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from processors.aetitle.records import dedupe_last_wins
from processors.jobnames import group_id
from streams.events import GroupClosed, GroupUpdated, Supersedes


@dataclass(frozen=True, slots=True)
class _Latest:
    group_id: str
    version: int
    record: GroupClosed
    amend_until: int


class Versions:
    """The latest version of each recently closed group, per partition."""

    def __init__(self, ae_title: str, window_ms: int) -> None:
        self.ae_title = ae_title
        self.window_ms = window_ms
        self._latest: dict[int, dict[str, _Latest]] = {}

    def record(self, partition: int, key: str, record: GroupClosed, deadline: int) -> GroupClosed:
        """The record to write for a group of ``key`` that closed at ``deadline``:
        ``record`` itself (with its file hold) or a ``group.updated`` of the version
        closed less than the window before its first instance."""
        latest = self._latest.setdefault(partition, {})
        self._expire(latest, record.first_received_at)
        amend_until = deadline + self.window_ms
        previous = latest.pop(key, None)
        if previous is None or record.first_received_at > previous.amend_until:
            out: GroupClosed = replace(record, files_kept_until=amend_until)
            first = record.inputs[0]
            gid, version = group_id(self.ae_title, first.partition, first.offset), 1
        else:
            out = self._amend(previous, record, amend_until)
            gid, version = previous.group_id, previous.version + 1
        latest[key] = _Latest(gid, version, out, amend_until)
        return out

    def _amend(self, previous: _Latest, record: GroupClosed, amend_until: int) -> GroupUpdated:
        kept, _ = dedupe_last_wins((*previous.record.instances, *record.instances))
        return GroupUpdated(
            processor=record.processor,
            ae_title=record.ae_title,
            group_by=record.group_by,
            group_key=record.group_key,
            reason=record.reason,
            first_received_at=previous.record.first_received_at,
            last_received_at=record.last_received_at,
            instances=kept,
            inputs=record.inputs,
            jobs=record.jobs,
            patient_id=record.patient_id,
            input_topic=record.input_topic,
            files_kept_until=amend_until,
            version=previous.version + 1,
            supersedes=Supersedes(
                previous.group_id,
                previous.version,
                tuple(j.job_id for j in previous.record.jobs),
            ),
            added=tuple(i.sop_instance_uid for i in record.instances),
        )

    @staticmethod
    def _expire(latest: dict[str, _Latest], now: int) -> None:
        # Close order is deadline order, so the oldest entries come first.
        while latest:
            key, entry = next(iter(latest.items()))
            if entry.amend_until >= now:
                return
            del latest[key]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions."""
        for partition in partitions:
            self._latest.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self._latest.values())
