"""How ``dicom-adapter replay`` shows its answer: a table for people, JSON for scripts.

Neither form names a patient unless asked (``show_phi``): the group key of a grouping
that is not a Study or Series Instance UID is hidden as in ``events`` and ``jobs``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import orjson

from processors.redact import redact_data
from processors.replay import GroupDiff, ReplayedGroup


def when(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC) of an epoch-milliseconds time."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def group_json(group: ReplayedGroup, *, show_phi: bool = False) -> dict[str, Any]:
    """One replayed group as JSON (``state``: ``closed`` or ``open``)."""
    r = group.record
    data: dict[str, Any] = {
        "group_id": group.group_id,
        "state": "open" if group.open else "closed",
        "reason": None if group.open else r.reason,
        "ae_title": r.ae_title,
        "group_by": r.group_by,
        "group_key": r.group_key,
        "first_received_at": r.first_received_at,
        "last_received_at": r.last_received_at,
        "instances": [i.sop_instance_uid for i in r.instances],
        "inputs": [[i.partition, i.offset] for i in r.inputs],
        "jobs": [
            {
                "job_id": j.job_id,
                "name": j.name,
                "pipeline_name": j.pipeline_name,
                "pipeline_id": j.pipeline_id,
                "priority": j.priority,
            }
            for j in r.jobs
        ]
        if not group.open
        else [],
    }
    return data if show_phi else redact_data(data)


def diff_json(diff: GroupDiff) -> dict[str, Any]:
    """The diff as JSON: group ids by change and every move."""
    return {
        "unchanged": list(diff.unchanged),
        "changed": list(diff.changed),
        "removed": list(diff.removed),
        "added": list(diff.added),
        "moves": [
            {
                "input": [m.input.partition, m.input.offset],
                "sop_instance_uid": m.sop_instance_uid,
                "from": m.before,
                "to": m.after,
            }
            for m in diff.moves
        ],
    }


def write_json(
    out: TextIO,
    groups: Sequence[ReplayedGroup],
    diff: GroupDiff | None,
    summary: Mapping[str, Any],
    *,
    show_phi: bool,
) -> None:
    """One JSON document: ``summary``, ``groups`` and (with ``--diff``) ``diff``."""
    doc: dict[str, Any] = {
        "summary": dict(summary),
        "groups": [group_json(g, show_phi=show_phi) for g in groups],
    }
    if diff is not None:
        doc["diff"] = diff_json(diff)
    out.write(orjson.dumps(doc).decode() + "\n")


def write_text(
    out: TextIO,
    groups: Sequence[ReplayedGroup],
    diff: GroupDiff | None,
    summary: Mapping[str, Any],
) -> None:
    """The groups as a table (no patient data), then the diff."""
    out.write(
        f"replayed {summary['records']} records: {summary['closed']} groups closed, "
        f"{summary['open']} still open at the end of the log, "
        f"{summary['ignored']} instances ignored\n"
    )
    rows = [("GROUP", "AE", "STATE", "FIRST", "LAST", "INSTANCES", "JOBS")]
    for g in groups:
        r = g.record
        state = "open" if g.open else f"closed ({r.reason})"
        jobs = "-" if g.open else ",".join(j.pipeline_name for j in r.jobs)
        rows.append(
            (
                g.group_id,
                r.ae_title,
                state,
                when(r.first_received_at),
                when(r.last_received_at),
                str(len(r.instances)),
                jobs,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    if diff is None:
        return
    out.write(
        f"diff against the ledger: {len(diff.unchanged)} unchanged, {len(diff.changed)} "
        f"changed, {len(diff.removed)} removed, {len(diff.added)} added; "
        f"{len(diff.moves)} instances moved\n"
    )
    for label, ids in (("changed", diff.changed), ("removed", diff.removed), ("added", diff.added)):
        for gid in ids:
            out.write(f"  {label} {gid}\n")
    for m in diff.moves:
        out.write(
            f"  moved {m.sop_instance_uid or '?'} (input {m.input.partition}:{m.input.offset}) "
            f"from {m.before or '(no group)'} to {m.after or '(no group)'}\n"
        )
