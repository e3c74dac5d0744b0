"""Load rounds (issue 8), the checks: every C-STORE answered Success, and on the jobs
ledger every instance in exactly one job per pipeline, one group per study, no job id
twice and every job submitted once. Each returns a list of problems (empty: fine), so
the test asserts on it and the bench prints it.
"""

from __future__ import annotations

import collections

from streams.events import GroupClosed
from tests.helpers.load import Planned, Sent
from tests.helpers.loadrun import LedgerTail, RoundResult
from tests.helpers.processor import PIPELINES


def send_problems(planned: list[Planned], sent: list[Sent]) -> list[str]:
    """Associations that failed and instances not answered Success."""
    problems: list[str] = []
    by_index = {s.index: s for s in sent}
    for plan in planned:
        result = by_index[plan.index]
        if result.returncode != 0:
            problems.append(
                f"association {plan.index}: storescu exit {result.returncode}: {result.tail}"
            )
        failed = result.failures(plan.sops)
        if failed:
            sample = dict(list(failed.items())[:3])
            problems.append(
                f"association {plan.index}: {len(failed)} of {len(plan.sops)} C-STOREs "
                f"not answered Success, e.g. {sample}"
            )
    return problems


def round_problems(result: RoundResult, tail: LedgerTail) -> list[str]:
    """Per-instance outcome, and one group per study with exactly its instances and one
    job per pipeline."""
    problems = send_problems(result.planned, result.sent)
    by_study = {p.study_uid: p for p in result.planned}
    groups = [g for g in tail.job_groups if g.group_key in by_study]
    keys = collections.Counter(g.group_key for g in groups)
    split = [k for k, n in keys.items() if n != 1]
    if split:
        problems.append(f"{len(split)} studies split into several groups")
    if set(keys) != set(by_study):
        problems.append(f"{len(set(by_study) - set(keys))} studies without a group")
    for group in groups:
        members = sorted(i.sop_instance_uid for i in group.instances)
        if members != sorted(by_study[group.group_key].sops):
            problems.append(f"group {group.group_key}: {len(members)} instances, not its study")
        if [j.pipeline_name for j in group.jobs] != list(PIPELINES):
            problems.append(
                f"group {group.group_key}: jobs {[j.pipeline_name for j in group.jobs]}"
            )
    return problems


def ledger_problems(tail: LedgerTail, every_sop: set[str]) -> list[str]:
    """Over the whole ledger: exactly once per pipeline, unique job ids, each submitted
    once, every instance reclaimed and nothing reclaimed without a job."""
    problems: list[str] = []
    per_pipeline: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    job_ids: list[str] = []
    for group in tail.job_groups:
        for job in group.jobs:
            job_ids.append(job.job_id)
            per_pipeline[job.pipeline_name].update(i.sop_instance_uid for i in group.instances)
    for name in PIPELINES:
        counts = per_pipeline[name]
        lost = every_sop - set(counts)
        doubled = [sop for sop, n in counts.items() if n != 1]
        extra = set(counts) - every_sop
        if lost or doubled or extra:
            problems.append(
                f"pipeline {name}: {len(lost)} lost, {len(doubled)} in more than one job, "
                f"{len(extra)} never sent"
            )
    if len(job_ids) != len(set(job_ids)):
        problems.append(f"{len(job_ids) - len(set(job_ids))} job ids written twice")
    submitted = collections.Counter(tail.submitted)
    if set(submitted) != set(job_ids):
        problems.append(f"{len(set(job_ids) - set(submitted))} jobs never submitted")
    if any(n != 1 for n in submitted.values()):
        problems.append("a job was submitted more than once")
    if not every_sop <= tail.removed:
        problems.append(f"{len(every_sop - tail.removed)} instances never reclaimed")
    removals = [
        r.envelope.data
        for r in tail.records
        if isinstance(r.envelope.data, GroupClosed) and not r.envelope.data.jobs
    ]
    if removals:
        problems.append(f"{len(removals)} removal requests (ignored instances) on the ledger")
    return problems


__all__ = ["ledger_problems", "round_problems", "send_problems"]
