"""The invariants a chaos run must keep, checked on what the run left behind (pure).

Inputs: every sender outcome, every event of the jobs ledger, the instance files still
in storage, the platform's created jobs and the fault timeline. Output: the violations
(empty when the run is good) and the run's figures.

1. Every C-STORE answered Success is in exactly one job per pipeline, and that job was
   submitted — or, when the platform refused it for good, dead-lettered.
2. A C-STORE without an answer (its SCP was killed) is in at most one job per pipeline.
3. A C-STORE answered with a failure status is in no job and left no file.
4. No job id twice: not in two groups, not submitted twice, not created twice.
5. No file is left for a group whose jobs were all submitted; no file is deleted for a
   group with a job that was not submitted.
6. Every C-STORE the SCP did not store got a DICOM failure status — unless its SCP was
   down (killed, not yet back) during that association; refusals are 0xA700 (Out of
   Resources), nothing else.
7. No patient id in any record key (keys are ``<AE>/<HMAC>``), nor in any line any role
   logged, at any level (the roles run at DEBUG): :func:`log_violations`.
8. No key is grouped twice unless its instances were received at least the timeout apart
   (less :data:`SPLIT_MARGIN_S`): kills, broker pauses, a full disk and rebalances never
   split a group (issue 14; before the bus clock, outbox backlogs did). Receipt times are
   the SCPs' ``received_at`` (every SCP of a run shares the host's clock); the senders'
   spans are too coarse (a ``storescu`` run under load takes seconds).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.events import EventData, GroupClosed, JobFailed, JobSubmitted, is_hashed_key
from tests.chaos.senders import Outcome

#: Slack when comparing receipt times with the grouping timeout (heartbeat transit).
SPLIT_MARGIN_S = 1.0

#: How a refusal for a full disk reads: pynetdicom's code, DCMTK's status text.
OUT_OF_RESOURCES = {"0xA700", "Refused: OutOfResources"}


@dataclass(frozen=True)
class Window:
    """When an association ran (monotonic seconds) and to which SCP."""

    scp: int
    start: float
    end: float


@dataclass
class Verdict:
    """The violations found and the figures of the run."""

    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.violations.append(message)


@dataclass(frozen=True)
class RunFacts:
    """Everything the checker reads; built by the driver after the run settled."""

    outcomes: Sequence[Outcome]
    ledger: Sequence[EventData]
    files: Mapping[str, str]  # SOP UID -> path of its file left in storage
    pipelines: Sequence[str]
    refused_studies: frozenset[str]
    created: Sequence[str]  # idempotency keys the platform created a job for, with repeats
    windows: Mapping[str, Window]  # SOP UID -> the association that carried it
    downtimes: Sequence[tuple[int, float, float]] = ()  # (SCP index, SIGKILL, back up)
    keys: Sequence[str] = ()  # the record keys of both topics
    phi: str = ""  # what every patient id of the run starts with
    timeout_s: float = 5.0  # the grouping timeout of every AE title
    received: Mapping[str, float] = dataclasses.field(default_factory=dict)  # SOP UID -> s


def _groups(ledger: Iterable[EventData]) -> list[GroupClosed]:
    return [e for e in ledger if isinstance(e, GroupClosed) and e.jobs]


def _check_jobs(facts: RunFacts, verdict: Verdict) -> tuple[set[str], set[str]]:
    """Invariant 4; returns (submitted, dead-lettered) job ids."""
    groups = _groups(facts.ledger)
    ids = [j.job_id for g in groups for j in g.jobs]
    for job_id, n in collections.Counter(ids).items():
        if n > 1:
            verdict.fail(f"job {job_id} is in {n} group.closed events")
    submitted = collections.Counter(e.job_id for e in facts.ledger if isinstance(e, JobSubmitted))
    for job_id, n in submitted.items():
        if n > 1:
            verdict.fail(f"job {job_id} was submitted {n} times")
        if job_id not in ids:
            verdict.fail(f"job {job_id} was submitted but no group.closed has it")
    for key, n in collections.Counter(facts.created).items():
        if n > 1:
            verdict.fail(f"the platform created job {key} {n} times")
    if set(facts.created) != set(submitted):
        verdict.fail(
            f"platform jobs {sorted(set(facts.created) ^ set(submitted))} differ from the "
            "job.submitted events"
        )
    dead = {e.job_id for e in facts.ledger if isinstance(e, JobFailed) and not e.will_retry} - set(
        submitted
    )
    return set(submitted), dead


def _check_instances(
    facts: RunFacts, verdict: Verdict, submitted: set[str], dead: set[str]
) -> None:
    """Invariants 1, 2 and 3."""
    jobs_of: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    # The platform refuses a job holding an instance of a refused study; a group by
    # Modality (CHAOS-MOD) mixes studies, so its other instances share that fate.
    refused_jobs: set[str] = set()
    for group in _groups(facts.ledger):
        sops = [i.sop_instance_uid for i in group.instances]
        if len(sops) != len(set(sops)):
            verdict.fail(f"group {group.group_key} lists an instance twice")
        for job in group.jobs:
            for item in group.instances:
                jobs_of[(item.sop_instance_uid, job.pipeline_name)].append(job.job_id)
                if item.study_instance_uid in facts.refused_studies:
                    refused_jobs.add(job.job_id)
    sent = {o.instance.sop for o in facts.outcomes}
    for (sop, pipeline), _ in jobs_of.items():
        if sop not in sent:
            verdict.fail(f"instance {sop} is in a {pipeline} job but was never sent")
    for outcome in facts.outcomes:
        sop = outcome.instance.sop
        for pipeline in facts.pipelines:
            jobs = jobs_of.get((sop, pipeline), [])
            if outcome.acked and len(jobs) != 1:
                verdict.fail(f"acked {sop} is in {len(jobs)} {pipeline} jobs")
            elif not outcome.answered and len(jobs) > 1:
                verdict.fail(f"unanswered {sop} is in {len(jobs)} {pipeline} jobs")
            elif outcome.answered and not outcome.acked and jobs:
                verdict.fail(f"refused {sop} is in {pipeline} job(s) {jobs}")
            for job_id in jobs if outcome.acked else ():
                refused = job_id in refused_jobs
                if refused and job_id not in dead:
                    verdict.fail(f"job {job_id} of a refused study is not dead-lettered")
                if not refused and job_id not in submitted:
                    verdict.fail(f"job {job_id} with acked {sop} was never submitted")
        if outcome.answered and not outcome.acked and sop in facts.files:
            verdict.fail(f"refused {sop} left a file: {facts.files[sop]}")


def _check_files(facts: RunFacts, verdict: Verdict, submitted: set[str]) -> int:
    """Invariant 5; returns the number of orphan files (unanswered, never in a group)."""
    in_group: set[str] = set()
    for group in _groups(facts.ledger):
        sops = {i.sop_instance_uid for i in group.instances}
        in_group |= sops
        done = all(j.job_id in submitted for j in group.jobs)
        for sop in sorted(sops):
            if done and sop in facts.files:
                verdict.fail(f"{sop} of submitted group {group.group_key} still has a file")
            if not done and sop not in facts.files:
                verdict.fail(f"{sop} of unsubmitted group {group.group_key} lost its file")
    answered = {o.instance.sop for o in facts.outcomes if o.answered}
    orphans = 0
    for sop in facts.files.keys() - in_group:
        if sop in answered:
            verdict.fail(f"answered {sop} has a file but is in no group")
        else:
            orphans += 1
    return orphans


def _check_answers(facts: RunFacts, verdict: Verdict) -> None:
    """Invariant 6."""
    for outcome in facts.outcomes:
        if outcome.answered and not outcome.acked and outcome.status not in OUT_OF_RESOURCES:
            verdict.fail(f"{outcome.instance.sop} refused with {outcome.status}, not 0xA700")
        if outcome.answered:
            continue
        window = facts.windows.get(outcome.instance.sop)
        killed = window is not None and any(
            scp == window.scp and down <= window.end and up >= window.start
            for scp, down, up in facts.downtimes
        )
        if not killed:
            verdict.fail(
                f"{outcome.instance.sop} ({outcome.sender}) got no answer "
                f"({outcome.status}) though its SCP was not down: {window}, "
                f"downtimes {list(facts.downtimes)}"
            )


def _check_keys(facts: RunFacts, verdict: Verdict) -> None:
    """Invariant 7, for record keys."""
    for key in sorted(set(facts.keys)):
        if not is_hashed_key(key) or (facts.phi and facts.phi in key):
            verdict.fail(f"record key {key!r} is not <AE>/<HMAC> (a patient id in a key?)")


def _check_splits(facts: RunFacts, verdict: Verdict) -> int:
    """Invariant 8; returns how many keys were grouped more than once (any reason).

    A group's span is its instances' receipt times at the SCPs; without them (a checker
    test) the senders' times, from when each instance reached the SCP as far as the
    sender can tell."""
    sent = {o.instance.sop: o.sent for o in facts.outcomes if o.sent is not None}
    by_key: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
    for group in _groups(facts.ledger):
        uids = [i.sop_instance_uid for i in group.instances]
        received = [facts.received[u] for u in uids if u in facts.received]
        found = [sent[u] for u in uids if u in sent]
        if received:
            by_key[(group.ae_title, group.group_key)].append((min(received), max(received)))
        elif found:
            span = (min(start for start, _ in found), max(end for _, end in found))
            by_key[(group.ae_title, group.group_key)].append(span)
    for (ae, key), spans in by_key.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start - end < facts.timeout_s - SPLIT_MARGIN_S:
                verdict.fail(
                    f"{ae} key {key} split though received {start - end:.1f} s apart "
                    f"(timeout {facts.timeout_s:g} s)"
                )
    return sum(len(spans) > 1 for spans in by_key.values())


def log_violations(name: str, text: str, phi: str) -> list[str]:
    """Invariant 7 and clean logs for one role's log: JSON lines only, no traceback at
    INFO or above (DEBUG may explain an expected failure), and no line naming a patient,
    whatever its level."""
    found: list[str] = []
    tracebacks = [
        line for line in text.splitlines() if "Traceback" in line and '"level":"DEBUG"' not in line
    ]
    if tracebacks:
        found.append(f"{name} logged a traceback:\n{tracebacks[0][-2000:]}")
    leaks = [line for line in text.splitlines() if phi in line]
    if leaks:
        found.append(f"{name} logged a patient id ({len(leaks)} lines), e.g.: {leaks[0][:300]}")
    for line in text.splitlines():
        if line.strip() and not line.startswith("{"):
            found.append(f"{name} wrote a non-JSON log line: {line[:200]}")
            break
    return found


def check(facts: RunFacts) -> Verdict:
    """Every invariant of the module docstring, with the run's figures."""
    verdict = Verdict()
    _check_keys(facts, verdict)
    submitted, dead = _check_jobs(facts, verdict)
    _check_instances(facts, verdict, submitted, dead)
    orphans = _check_files(facts, verdict, submitted)
    _check_answers(facts, verdict)
    split_keys = _check_splits(facts, verdict)
    groups = _groups(facts.ledger)
    verdict.figures = {
        "instances": len(facts.outcomes),
        "acked": sum(o.acked for o in facts.outcomes),
        "refused": sum(o.answered and not o.acked for o in facts.outcomes),
        "unanswered": sum(not o.answered for o in facts.outcomes),
        "groups": len(groups),
        "jobs": sum(len(g.jobs) for g in groups),
        "submitted": len(submitted),
        "dead_lettered": len(dead),
        "orphan_files": orphans,
        # Keys grouped more than once because they were sent more than the timeout apart
        # (a sender retried after a kill); closer than that is a violation (invariant 8).
        "split_keys": split_keys,
    }
    return verdict
