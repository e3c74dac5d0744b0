"""Prometheus metrics of every role, served at ``/metrics`` (issue 6).

The metrics live in prometheus-client's default registry (``REGISTRY``), one per process,
so any module can count without a registry being passed around; the HTTP endpoint
(``processors.http``) exposes that registry. Call sites use the one-line helpers below
rather than the metric objects, so label names and values (status as ``0xA700``,
outcome and priority words) are spelled in exactly one place.

Counters only grow for the life of a process: tests compare a value before and after
their traffic (:func:`sample_value`), never an absolute number.

No label ever carries PHI: AE titles, statuses, topics, partitions and reasons only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, Final, Literal

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

# ``*_created`` timestamps double the series count and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

NAMESPACE: Final = "dicom_adapter"
DISTRIBUTION: Final = "dicom-stream-adapter"

JobOutcome = Literal["submitted", "failed", "dead_lettered"]
JOB_OUTCOMES: Final[tuple[JobOutcome, ...]] = ("submitted", "failed", "dead_lettered")

# Close lag is mostly the partition clock's grace (~1 s) plus the sweep period; the
# long tail shows idle partitions (no newer event moves the clock) and stalled loops.
CLOSE_LAG_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)

# -- the SCP (streams/scp) ----------------------------------------------------------

INSTANCES_RECEIVED = Counter(
    "instances_received",
    "C-STORE requests received, before storing (one per instance offered).",
    ["called_ae"],
    namespace=NAMESPACE,
)
INSTANCES_STORED = Counter(
    "instances_stored",
    "Instances written to storage (the file is on disk).",
    ["called_ae"],
    namespace=NAMESPACE,
)
INSTANCES_PUBLISHED = Counter(
    "instances_published",
    "instance.received events acknowledged by Kafka (acks=all), including outbox replays.",
    ["called_ae"],
    namespace=NAMESPACE,
)
INSTANCES_REFUSED = Counter(
    "instances_refused",
    "C-STORE requests answered with a non-success status (status as hex, e.g. 0xA700).",
    ["called_ae", "status"],
    namespace=NAMESPACE,
)
# Depth in bytes because that is what the outbox knows exactly, also right after a
# restart (an event count would need a scan of the file); 0 means "all delivered".
OUTBOX_DEPTH = Gauge(
    "outbox_pending_bytes",
    "Bytes of events in the local outbox not yet acknowledged by Kafka (0 = all delivered).",
    namespace=NAMESPACE,
)

# -- the job processors (processors/) -----------------------------------------------

OPEN_GROUPS = Gauge(
    "open_groups",
    "Groups (windows) currently open, per called AE title.",
    ["ae_title"],
    namespace=NAMESPACE,
)
GROUP_CLOSE_LAG = Histogram(
    "group_close_lag_seconds",
    "Seconds between a group's deadline (max received_at + timeout) and its close "
    "(0 when it closed early, e.g. on a max-open cap).",
    ["ae_title"],
    namespace=NAMESPACE,
    buckets=CLOSE_LAG_BUCKETS,
)
GROUPS_CLOSED = Counter(
    "groups_closed",
    "Groups closed, per called AE title and reason (timeout, max_age, forced).",
    ["ae_title", "reason"],
    namespace=NAMESPACE,
)
INSTANCES_IGNORED = Counter(
    "instances_ignored",
    "Instances a job processor skipped (e.g. the grouping tag is missing), by reason.",
    ["ae_title", "reason"],
    namespace=NAMESPACE,
)

FOREIGN_KEYS = Counter(
    "instances_foreign_key",
    "Instance events whose record key another key secret made (kafka.key_secret differs "
    "between adapters of the bus), by the adapter that wrote them.",
    ["source"],
    namespace=NAMESPACE,
)

# -- the submitter and reclaimer ------------------------------------------------------

JOBS = Counter(
    "jobs",
    "Job outcomes written to the ledger: submitted (job.submitted), failed (job.failed "
    "with will_retry, once per failed attempt), dead_lettered (job.failed, no retry).",
    ["outcome", "priority"],
    namespace=NAMESPACE,
)
SUBMIT_ATTEMPTS = Counter(
    "submit_attempts",
    "Job submission attempts (stage the payload, call the platform), each ending in "
    "job.submitted or job.failed.",
    namespace=NAMESPACE,
)
RECLAIMED_BYTES = Counter(
    "reclaimed_bytes",
    "Bytes of instance files and payloads deleted by the reclaimer.",
    namespace=NAMESPACE,
)

# -- every Kafka consumer ---------------------------------------------------------------

CONSUMER_LAG = Gauge(
    "consumer_lag",
    "Records between a consumer's position and the partition's high watermark.",
    ["group", "topic", "partition"],
    namespace=NAMESPACE,
)

# -- the exporter (processors/export) ------------------------------------------------

ExportOutcome = Literal["completed", "failed", "dead_lettered"]
EXPORT_ATTEMPTS = Counter(
    "export_attempts",
    "Export attempts started, per destination (one per request and destination and try).",
    ["destination"],
    namespace=NAMESPACE,
)
EXPORT_OUTCOMES = Counter(
    "export_outcomes",
    "Export attempts ended: completed, failed (will retry) or dead_lettered.",
    ["destination", "outcome"],
    namespace=NAMESPACE,
)
EXPORT_INSTANCES_SENT = Counter(
    "export_instances_sent",
    "Instances a destination confirmed holding (C-STORE success or STOW-RS referenced).",
    ["destination"],
    namespace=NAMESPACE,
)
OPEN_EXPORTS = Gauge(
    "open_exports",
    "Exports (request and destination) this process owns that are not completed or dead.",
    namespace=NAMESPACE,
)

PROCESS_INFO = Info(
    "process",
    "Which adapter and role this process is (value is always 1).",
    namespace=NAMESPACE,
)


def status_hex(status: int) -> str:
    """A DIMSE status as the label value: ``0xA700`` (four upper-case hex digits)."""
    return f"0x{status:04X}"


def instance_received(called_ae: str) -> None:
    """Count one C-STORE request for ``called_ae``."""
    INSTANCES_RECEIVED.labels(called_ae=called_ae).inc()


def instance_stored(called_ae: str) -> None:
    """Count one instance written to storage."""
    INSTANCES_STORED.labels(called_ae=called_ae).inc()


def instances_published(called_ae: str, count: int = 1) -> None:
    """Count ``count`` instance.received events acknowledged by Kafka."""
    INSTANCES_PUBLISHED.labels(called_ae=called_ae).inc(count)


def instance_refused(called_ae: str, status: int) -> None:
    """Count one C-STORE answered with the non-success ``status`` (e.g. 0xA700)."""
    INSTANCES_REFUSED.labels(called_ae=called_ae, status=status_hex(status)).inc()


def set_outbox_depth(pending_bytes: int) -> None:
    """The outbox's ``pending_bytes`` now (events waiting for Kafka, in bytes)."""
    OUTBOX_DEPTH.set(pending_bytes)


def set_open_groups(ae_title: str, count: int) -> None:
    """Groups open now for ``ae_title``."""
    OPEN_GROUPS.labels(ae_title=ae_title).set(count)


_CHILDREN: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: ``labels`` validates and locks on every
    call, a cost per event on the processors' hot path (docs/benchmarks.md). Only for
    metrics whose label sets are never removed."""
    key = (metric, labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def group_closed(
    ae_title: str, reason: str, closed_at_ms: int, deadline_ms: int | None = None
) -> None:
    """Count one closed group by ``reason`` and observe its close lag when it has a
    ``deadline_ms`` (a quiet-timeout close); times are epoch milliseconds.

    The lag is ``closed_at - deadline`` clamped at 0: a group closed before its
    deadline was not late.
    """
    _child(GROUPS_CLOSED, ae_title, reason).inc()
    if deadline_ms is not None:
        lag_ms = max(0, closed_at_ms - deadline_ms)
        _child(GROUP_CLOSE_LAG, ae_title).observe(lag_ms / 1000.0)


def instances_ignored(ae_title: str, reason: str, count: int = 1) -> None:
    """Count ``count`` instances a processor skipped; ``reason`` is a short fixed word
    (e.g. ``missing-group-key``; ``-`` becomes ``_``), never a value from an instance."""
    INSTANCES_IGNORED.labels(ae_title=ae_title, reason=reason.replace("-", "_")).inc(count)


def foreign_key(source: str) -> None:
    """Count one instance event keyed with another key secret (see :data:`FOREIGN_KEYS`)."""
    _child(FOREIGN_KEYS, source).inc()


def job_outcome(outcome: JobOutcome, priority: str) -> None:
    """Count one job outcome event (see :data:`JOBS`); ``priority`` is the job's
    ``lower|normal|higher|immediate``."""
    if outcome not in JOB_OUTCOMES:
        raise ValueError(f"job outcome {outcome!r} is not one of {', '.join(JOB_OUTCOMES)}")
    JOBS.labels(outcome=outcome, priority=priority).inc()


def submit_attempt() -> None:
    """Count one call to the pipeline platform."""
    SUBMIT_ATTEMPTS.inc()


def bytes_reclaimed(count: int) -> None:
    """Count ``count`` bytes deleted (ignored when not positive)."""
    if count > 0:
        RECLAIMED_BYTES.inc(count)


def export_attempt(destination: str) -> None:
    """An export attempt to ``destination`` starts."""
    EXPORT_ATTEMPTS.labels(destination).inc()


def export_outcome(destination: str, outcome: ExportOutcome, sent: int) -> None:
    """An export attempt ended with ``outcome`` after ``sent`` more instances arrived."""
    EXPORT_OUTCOMES.labels(destination, outcome).inc()
    if sent > 0:
        EXPORT_INSTANCES_SENT.labels(destination).inc(sent)


def set_open_exports(count: int) -> None:
    """Open exports owned by this process."""
    OPEN_EXPORTS.set(count)


def set_consumer_lag(
    group: str, topic: str, partition: int, high_watermark: int, position: int
) -> None:
    """Lag of one assigned partition: ``high_watermark - position`` (never negative)."""
    lag = max(0, high_watermark - position)
    CONSUMER_LAG.labels(group=group, topic=topic, partition=str(partition)).set(lag)


def forget_partition(group: str, topic: str, partition: int) -> None:
    """Drop the lag series of a revoked partition (another replica reports it now)."""
    # Older prometheus-client versions raise KeyError for an unknown series.
    with contextlib.suppress(KeyError):
        CONSUMER_LAG.remove(group, topic, str(partition))


def set_process_info(adapter_id: str, role: str, version: str | None = None) -> None:
    """Label this process (``dicom_adapter_process_info``) with its adapter, role and
    version (default: the installed package's)."""
    if version is None:
        try:
            version = package_version(DISTRIBUTION)
        except PackageNotFoundError:
            version = "unknown"
    PROCESS_INFO.info({"adapter_id": adapter_id, "role": role, "version": version})


def sample_value(
    name: str, labels: Mapping[str, str] | None = None, registry: CollectorRegistry = REGISTRY
) -> float:
    """The current value of one sample (``dicom_adapter_jobs_total``...), 0.0 if it has
    not been recorded yet; for tests and diagnostics."""
    value = registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


__all__ = [
    "CLOSE_LAG_BUCKETS",
    "CONSUMER_LAG",
    "FOREIGN_KEYS",
    "GROUP_CLOSE_LAG",
    "INSTANCES_IGNORED",
    "INSTANCES_PUBLISHED",
    "INSTANCES_RECEIVED",
    "INSTANCES_REFUSED",
    "INSTANCES_STORED",
    "JOBS",
    "JOB_OUTCOMES",
    "NAMESPACE",
    "OPEN_GROUPS",
    "OUTBOX_DEPTH",
    "PROCESS_INFO",
    "RECLAIMED_BYTES",
    "REGISTRY",
    "SUBMIT_ATTEMPTS",
    "JobOutcome",
    "bytes_reclaimed",
    "foreign_key",
    "forget_partition",
    "group_closed",
    "instance_received",
    "instance_refused",
    "instance_stored",
    "instances_ignored",
    "instances_published",
    "job_outcome",
    "sample_value",
    "set_consumer_lag",
    "set_open_groups",
    "set_outbox_depth",
    "set_process_info",
    "status_hex",
    "submit_attempt",
]
