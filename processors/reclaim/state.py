"""What the reclaimer may delete, folded from ``<prefix>.jobs`` (pure; no I/O, no clock).

A group's instance files may go once **every** job of the group is submitted (a group
without jobs — e.g. instances a processor ignored — at once), and a file is kept while
any other group that lists the same file still has a job that is not submitted. Dead-
lettered jobs keep their files for an operator (Clara deleted them after three failed
attempts, reference §2.5; we never do). ``instances.removed`` events close a group, so a
restart neither deletes twice nor writes the event twice.

Payload folders expire ``retention`` after their job was submitted (the service removes
them with the group's files when the retention is 0, and never when it is ``never``).

A group that a late instance may still amend (``files_kept_until``, lateArrivals:
amend) keeps its files until then even once its jobs are submitted: the next version
(``group.updated``) lists them again. Such groups become ready by time
(:meth:`ReclaimLedger.kept_due`), the others by the fold alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.events import Envelope, GroupClosed, GroupInstance, InstancesRemoved, JobSubmitted

PAYLOAD_EXPIRED = "payload_expired"


@dataclass(slots=True)
class GroupFiles:
    """One closed group as far as its files are concerned."""

    group_id: str  # envelope id of the group.closed
    key: str
    ae_title: str
    reason: str
    instances: tuple[GroupInstance, ...]
    job_ids: tuple[str, ...]
    last_received_at: int
    waiting: set[str] = field(default_factory=set)  # jobs not yet submitted
    reclaimed: bool = False
    kept_until: int = 0  # epoch ms: files kept for a later version until then (0: none)


@dataclass(frozen=True, slots=True)
class ReclaimPlan:
    """Files of one group to delete now, and files held back by unfinished groups."""

    group: GroupFiles
    delete: tuple[GroupInstance, ...]
    held: tuple[GroupInstance, ...]


@dataclass(frozen=True, slots=True)
class ExpiredPayload:
    """A submitted job whose payload folder is past retention."""

    job_id: str
    key: str
    payload_uri: str
    sop_instance_uids: tuple[str, ...]
    submitted_at: int


@dataclass(slots=True)
class _Submitted:
    key: str
    submitted_at: int
    payload_uri: str
    sop_instance_uids: tuple[str, ...]


class ReclaimLedger:
    """The fold; :meth:`apply` returns the groups that became ready to reclaim.

    ``track_payloads`` keeps, per submitted job, what an ``instances.removed`` of its
    expired payload must name (payload folder, SOP Instance UIDs) until the payload is
    removed; without payload retention nothing ever expires, so nothing is kept (the
    load test found the reclaimer keeping every submitted SOP Instance UID forever).
    A reclaimed group, and a job whose group is reclaimed and payload gone, are
    forgotten (only their ids stay, in a window of the last ``window``), so memory
    follows the open work, not the history (issue 13).
    """

    def __init__(self, *, track_payloads: bool = True, window: int = 10_000) -> None:
        self.track_payloads = track_payloads
        self.groups: dict[str, GroupFiles] = {}  # not yet reclaimed
        self._groups_of_job: dict[str, set[str]] = {}
        self._groups_of_uri: dict[str, set[str]] = {}  # unreclaimed groups per file
        self._submitted: dict[str, _Submitted] = {}  # jobs of unreclaimed groups, payloads
        # the last ``window`` reclaimed groups and finished jobs, forgotten otherwise: a
        # repeated event about one of them changes nothing
        self.window = window
        self._reclaimed: OrderedDict[str, None] = OrderedDict()
        self._done_jobs: OrderedDict[str, None] = OrderedDict()
        self._kept: set[str] = set()  # unreclaimed groups with a files_kept_until

    def apply(self, key: str, env: Envelope) -> tuple[GroupFiles, ...]:
        """Fold one event; returns groups that are now ready (all jobs submitted)."""
        data = env.data
        if isinstance(data, GroupClosed):
            return tuple(self._group_closed(key, env, data))
        if isinstance(data, JobSubmitted):
            return tuple(self._job_submitted(key, env, data))
        if isinstance(data, InstancesRemoved):
            self._removed(data)
        return ()

    def ready(self) -> Iterator[GroupFiles]:
        """Every group whose jobs are all submitted, whose files are not reclaimed and
        that keeps no files for a later version (those come from :meth:`kept_due`)."""
        return (
            g
            for g in self.groups.values()
            if not g.waiting and not g.reclaimed and not g.kept_until
        )

    def kept_due(self, now_ms: int) -> list[GroupFiles]:
        """Groups whose files were kept for a later version until ``now_ms`` or earlier
        and whose jobs are all submitted: ready now, the longest due first."""
        due = [self.groups[g] for g in self._kept if self.groups[g].kept_until <= now_ms]
        due.sort(key=lambda g: (g.kept_until, g.group_id))  # not the set's hash order
        return [g for g in due if not g.waiting and not g.reclaimed]

    def plan(self, group: GroupFiles, now_ms: int = 0) -> ReclaimPlan:
        """Split a ready group's files into deletable ones and ones another group needs
        (a job not submitted yet, or files kept for a later version after ``now_ms``)."""
        delete: list[GroupInstance] = []
        held: list[GroupInstance] = []
        for instance in group.instances:
            others = self._groups_of_uri.get(instance.uri, set()) - {group.group_id}
            if any(self.groups[g].waiting or self.groups[g].kept_until > now_ms for g in others):
                held.append(instance)
            else:
                delete.append(instance)
        return ReclaimPlan(group, tuple(delete), tuple(held))

    def drop_group(self, group_id: str) -> None:
        """Forget a group not yet reclaimed (its partition went to another owner), and
        the jobs only it waited for."""
        group = self.groups.pop(group_id, None)
        self._kept.discard(group_id)
        if group is None:
            return
        for instance in group.instances:
            refs = self._groups_of_uri.get(instance.uri)
            if refs is not None:
                refs.discard(group_id)
                if not refs:
                    del self._groups_of_uri[instance.uri]
        for job_id in group.job_ids:
            groups = self._groups_of_job.get(job_id)
            if groups is not None:
                groups.discard(group_id)
                if not groups:
                    del self._groups_of_job[job_id]
                    self.drop_job(job_id)

    def drop_job(self, job_id: str) -> None:
        """Forget a submitted job's payload bookkeeping (another owner expires it)."""
        self._submitted.pop(job_id, None)

    @property
    def recently_reclaimed(self) -> tuple[str, ...]:
        """Ids of the last reclaimed groups (forgotten but for this), oldest first."""
        return tuple(self._reclaimed)

    def holds(self, uri: str) -> bool:
        """Whether a group not yet reclaimed lists this file."""
        return uri in self._groups_of_uri

    @property
    def payload_uids_kept(self) -> int:
        """SOP Instance UIDs kept for payload expiry events (diagnostics)."""
        return sum(len(s.sop_instance_uids) for s in self._submitted.values())

    def expired_payloads(self, now_ms: int, retention_ms: int) -> list[ExpiredPayload]:
        """Submitted jobs whose payload is older than ``retention_ms`` (0: none ever)."""
        if retention_ms <= 0:
            return []
        return [
            ExpiredPayload(job_id, s.key, s.payload_uri, s.sop_instance_uids, s.submitted_at)
            for job_id, s in self._submitted.items()
            if s.payload_uri and now_ms - s.submitted_at >= retention_ms
        ]

    def payload_pending(self, job_id: str) -> bool:
        """Whether a submitted job's payload is still waiting to expire."""
        submitted = self._submitted.get(job_id)
        return submitted is not None and bool(submitted.payload_uri)

    def _group_closed(self, key: str, env: Envelope, data: GroupClosed) -> Iterator[GroupFiles]:
        if env.id in self.groups or env.id in self._reclaimed:
            return
        job_ids = tuple(j.job_id for j in data.jobs)
        group = GroupFiles(
            group_id=env.id,
            key=key,
            ae_title=data.ae_title,
            reason=data.reason,
            instances=data.instances,
            job_ids=job_ids,
            last_received_at=data.last_received_at,
            waiting={j for j in job_ids if j not in self._submitted},
            kept_until=data.files_kept_until,
        )
        self.groups[env.id] = group
        if group.kept_until:
            self._kept.add(env.id)
        for job_id in job_ids:
            self._groups_of_job.setdefault(job_id, set()).add(env.id)
        for instance in data.instances:
            self._groups_of_uri.setdefault(instance.uri, set()).add(env.id)
        if not group.waiting and not group.kept_until:
            yield group

    def _job_submitted(self, key: str, env: Envelope, data: JobSubmitted) -> Iterator[GroupFiles]:
        if data.job_id in self._submitted or data.job_id in self._done_jobs:
            return
        if self.track_payloads:
            uids = tuple(i.sop_instance_uid for i in data.instances)
            self._submitted[data.job_id] = _Submitted(key, env.time, data.payload_uri, uids)
        elif data.job_id in self._groups_of_job:
            self._submitted[data.job_id] = _Submitted(key, env.time, "", ())
        else:  # its group was reclaimed before this history starts: nothing to keep
            _remember(self._done_jobs, data.job_id, self.window)
        for group_id in sorted(self._groups_of_job.get(data.job_id, ())):
            group = self.groups[group_id]
            if data.job_id in group.waiting:
                group.waiting.discard(data.job_id)
                if not group.waiting and not group.reclaimed and not group.kept_until:
                    yield group

    def _removed(self, data: InstancesRemoved) -> None:
        if data.reason == PAYLOAD_EXPIRED:
            for job_id in data.job_ids:
                submitted = self._submitted.get(job_id)
                if submitted is not None:  # expired once: its payload is never named again
                    submitted.payload_uri, submitted.sop_instance_uids = "", ()
                    self._maybe_done(job_id)
            return
        group = self.groups.get(data.group_event_id)
        if group is None or group.reclaimed:
            return
        group.reclaimed = True
        self._kept.discard(group.group_id)
        for instance in group.instances:
            refs = self._groups_of_uri.get(instance.uri)
            if refs is not None:
                refs.discard(group.group_id)
                if not refs:
                    del self._groups_of_uri[instance.uri]
        group.instances = ()  # nothing left to plan; keep the fold small
        del self.groups[group.group_id]
        _remember(self._reclaimed, group.group_id, self.window)
        for job_id in group.job_ids:
            groups = self._groups_of_job.get(job_id)
            if groups is not None:
                groups.discard(group.group_id)
                if not groups:
                    del self._groups_of_job[job_id]
            self._maybe_done(job_id)

    def _maybe_done(self, job_id: str) -> None:
        """Forget a job whose groups are reclaimed and whose payload is gone or kept."""
        submitted = self._submitted.get(job_id)
        if submitted is None or submitted.payload_uri or job_id in self._groups_of_job:
            return
        del self._submitted[job_id]
        _remember(self._done_jobs, job_id, self.window)


def _remember(window: OrderedDict[str, None], item: str, size: int) -> None:
    window[item] = None
    while len(window) > size:
        window.popitem(last=False)
