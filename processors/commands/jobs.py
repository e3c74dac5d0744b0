"""``dicom-adapter jobs [list|show JOB_ID|retry JOB_ID|resubmit JOB_ID]`` — the auditor's
view of jobs.

Built by replaying ``<prefix>.jobs`` from the beginning with a group-less consumer (it
never joins or commits a consumer group) and folding it with the submitter's own fold
(:mod:`processors.submit.state`). ``retry`` writes a ``job.retry_requested`` event for a
dead-lettered job; the submitter owning the job's partition picks it up and gives the
job another round of ``submitter.max_attempts`` attempts. ``resubmit`` makes a NEW job
(new id, ``reason: "manual"``) with the job's instances, if their files are still on
disk, for the same pipeline or ``--pipeline NAME`` of the AE title's config
(:mod:`processors.commands.manual`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import orjson

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.commands.manual import (
    ae_settings,
    choose_pipelines,
    manual_group,
    publish_group,
    require_files,
)
from processors.redact import redact_data
from processors.submit.state import HistoryEntry, JobLedger, JobState
from processors.submit.views import describe, load_ledger, request_retry, summary
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.events import GroupClosed
from streams.kafka import Connection, KafkaConnection, topic_names


def register(subparsers: Any) -> None:
    """Add ``jobs`` to the CLI."""
    parser = subparsers.add_parser(
        "jobs",
        help="list jobs, show one, or retry a dead-lettered one (replays the jobs topic)",
        description=(
            "The jobs ledger as an auditor sees it: state (pending, failed = retrying, "
            "dead = dead-lettered, submitted), attempts, priority and timings, rebuilt by "
            "replaying <prefix>.jobs. 'retry JOB_ID' asks the submitter to re-submit a "
            "dead-lettered job."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "show", "retry", "resubmit"],
        help="default: list",
    )
    parser.add_argument("job_id", nargs="?", metavar="JOB_ID", help="for show, retry and resubmit")
    parser.add_argument(
        "--pipeline",
        metavar="NAME",
        help="resubmit: to this pipeline-NAME of the job's AE title (default: the job's own)",
    )
    parser.add_argument("--json", action="store_true", help="JSON output (one job per line)")
    parser.add_argument(
        "--state",
        choices=["pending", "failed", "dead", "submitted"],
        help="list only jobs in this state",
    )
    parser.add_argument("--reason", default="", help="retry: why, for the audit trail")
    parser.add_argument(
        "--show-phi",
        action="store_true",
        help="with --json: show patient identifiers (group keys of patient-level groups)",
    )
    parser.set_defaults(handler=run_jobs)


def run_jobs(args: argparse.Namespace) -> int:
    """Handler of ``jobs``; returns the exit code."""
    if args.action in ("show", "retry", "resubmit") and not args.job_id:
        raise UsageError(f"jobs {args.action} needs a JOB_ID (see 'dicom-adapter jobs list')")
    if args.action == "list" and args.job_id:
        raise UsageError(f"jobs list takes no JOB_ID; use 'dicom-adapter jobs show {args.job_id}'")
    config = resolve_kafka(args, load_settings(args))
    kafka = KafkaConnection.of(config.kafka)
    asyncio.run(kafka.check_credentials())
    topic = topic_names(config.kafka.topic_prefix).jobs
    ledger = asyncio.run(load_ledger(kafka, topic))
    out = sys.stdout
    if args.action == "list":
        print_list(ledger, out, as_json=args.json, state=args.state, show_phi=args.show_phi)
        return 0
    job = ledger.get(args.job_id)
    if job is None:
        raise UsageError(f"no job {args.job_id} in {topic}; see 'dicom-adapter jobs list'")
    if args.action == "show":
        print_job(job, out, as_json=args.json, show_phi=args.show_phi)
        return 0
    if args.action == "resubmit":
        record = resubmit(kafka, topic, job, config, args.pipeline)
        ids = ", ".join(f"{j.job_id} ({j.pipeline_name})" for j in record.jobs)
        print(
            f"new job {ids} from job {job.job_id}: follow it with 'dicom-adapter jobs show'",
            file=out,
        )
        return 0
    if job.status != "dead":
        raise UsageError(
            f"job {job.job_id} is {describe(job)}, not dead-lettered; only dead-lettered "
            "jobs can be retried"
        )
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    asyncio.run(request_retry(kafka, topic, job, requested_by=who, reason=args.reason))
    print(
        f"retry requested for job {job.job_id} (attempts so far: {job.attempts}); the "
        "submitter picks it up — follow it with 'dicom-adapter jobs show "
        f"{job.job_id}'",
        file=out,
    )
    return 0


def resubmit(
    kafka: Connection, topic: str, job: JobState, config: AdapterConfig, pipeline: str | None
) -> GroupClosed:
    """Write a manual ``group.closed`` re-running ``job``'s instances (new job id) on its
    pipeline or ``pipeline`` of its AE title; :class:`UsageError` when files are gone."""
    if not job.instances:
        raise UsageError(f"job {job.job_id} lists no instances; there is nothing to resubmit")
    if pipeline is None:
        pipelines = [(job.pipeline_name, job.pipeline_id)]
        priority: str = job.priority
    else:
        settings = ae_settings(config, job.ae_title)
        pipelines = choose_pipelines(settings, job.ae_title, pipeline)
        priority = settings.priority
    require_files(job.instances, f"job {job.job_id} cannot be resubmitted")
    record = manual_group(
        ae_title=job.ae_title,
        group_by="",
        group_key=job.group_key,
        patient_id=job.patient_id,
        instances=job.instances,
        pipelines=pipelines,
        priority=priority,
        now_ms=int(time.time() * 1000),
        first_received_at=job.first_received_at,
        last_received_at=job.last_received_at,
    )
    asyncio.run(publish_group(kafka, topic, job.key, record))
    return record


def detail(job: JobState) -> dict[str, Any]:
    """Everything about one job (``jobs show --json``)."""
    return {
        **summary(job),
        "key": job.key,
        "group_event_id": job.group_event_id,
        "instances": [
            {
                "sop_instance_uid": i.sop_instance_uid,
                "study_instance_uid": i.study_instance_uid,
                "series_instance_uid": i.series_instance_uid,
                "uri": i.uri,
            }
            for i in job.instances
        ],
        "history": [
            {"time": h.time, "event": h.event, "attempt": h.attempt, "detail": h.detail}
            for h in job.history
        ],
    }


_COLUMNS = ("JOB ID", "STATE", "PRIORITY", "ATT", "AE", "PIPELINE", "QUEUED", "DONE", "WAIT")


def print_list(
    ledger: JobLedger, out: TextIO, *, as_json: bool, state: str | None, show_phi: bool = False
) -> None:
    """All jobs, oldest first; human columns carry no patient data, JSON hides it unless
    ``show_phi``."""
    jobs = sorted(ledger, key=lambda j: (j.queued_at, j.job_id))
    if state:
        jobs = [j for j in jobs if j.status == state]
    if as_json:
        for job in jobs:
            fields = summary(job) if show_phi else redact_data(summary(job))
            out.write(orjson.dumps(fields).decode() + "\n")
        return
    print_table(_COLUMNS, [_row(j) for j in jobs], out)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO) -> None:
    """Left-aligned columns, two spaces apart, headed by ``columns``."""
    table = [tuple(columns), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _row(job: JobState) -> tuple[str, ...]:
    done = job.submitted_at or (job.last_failed_at if job.status == "dead" else 0)
    wait = duration(done - job.queued_at) if done and job.queued_at else "-"
    return (
        job.job_id,
        describe(job),
        job.priority,
        str(job.attempts),
        job.ae_title or "-",
        job.pipeline_name or "-",
        when(job.queued_at),
        when(done),
        wait,
    )


def print_job(job: JobState, out: TextIO, *, as_json: bool, show_phi: bool = False) -> None:
    """One job with its timeline; the human form leaves out patient data, JSON hides it
    unless ``show_phi``."""
    if as_json:
        fields = detail(job) if show_phi else redact_data(detail(job))
        out.write(orjson.dumps(fields).decode() + "\n")
        return
    lines = [
        ("job", job.job_id),
        ("state", describe(job)),
        ("name", job.name or "-"),
        ("ae title", job.ae_title or "-"),
        ("pipeline", f"{job.pipeline_name} ({job.pipeline_id})"),
        ("priority", job.priority),
        ("attempts", str(job.attempts)),
        ("instances", str(len(job.instances))),
        ("first received", when(job.first_received_at)),
        ("last received", when(job.last_received_at)),
        ("queued", when(job.queued_at)),
        ("submitted", when(job.submitted_at)),
        ("platform job id", job.platform_job_id or "-"),
        ("payload", job.payload_uri or "-"),
        ("next retry", when(job.retry_at)),
        ("last error", job.last_error or "-"),
        ("files removed", when(job.files_removed_at)),
    ]
    print_fields(lines, out)
    print_history(job.history, out)


def print_fields(lines: Sequence[tuple[str, str]], out: TextIO) -> None:
    """``name  value`` lines, the values aligned."""
    width = max(len(k) for k, _ in lines)
    for name, value in lines:
        out.write(f"{name.ljust(width)}  {value}\n")


def print_history(history: Iterable[HistoryEntry], out: TextIO) -> None:
    """A ``history:`` block, one event a line."""
    out.write("history:\n")
    for h in history:
        attempt = f" attempt={h.attempt}" if h.attempt else ""
        note = f" {h.detail}" if h.detail else ""
        out.write(f"  {when(h.time)} {h.event}{attempt}{note}\n")


def when(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` or ``-`` for 0."""
    if not epoch_ms:
        return "-"
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def duration(ms: int) -> str:
    """``850ms``, ``1.5s``, ``2m05s``, ``3h07m``."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
