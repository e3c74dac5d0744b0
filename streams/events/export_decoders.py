"""Decoders of the export events' ``data`` (wire form: :mod:`streams.events.serde`).

Optional fields default when absent, so older writers stay readable; unknown fields are
ignored (forward compatible), as for every event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.events.records import (
    ExportCompleted,
    ExportFailed,
    ExportFile,
    ExportInstance,
    ExportProgress,
    ExportRequested,
    ExportRetryRequested,
)


def _export_instances(items: Any) -> tuple[ExportInstance, ...]:
    return tuple(
        ExportInstance(
            sop_instance_uid=i["sop_instance_uid"],
            uri=i["uri"],
            status=i["status"],
            code=i.get("code"),
            error=i.get("error", ""),
            retriable=i.get("retriable", False),
        )
        for i in items
    )


def export_requested(d: Mapping[str, Any]) -> ExportRequested:
    """``export.requested`` data."""
    return ExportRequested(
        request_id=d["request_id"],
        destinations=tuple(d["destinations"]),
        files=tuple(
            ExportFile(
                uri=f["uri"],
                sop_instance_uid=f.get("sop_instance_uid", ""),
                sop_class_uid=f.get("sop_class_uid", ""),
            )
            for f in d["files"]
        ),
        job_id=d.get("job_id", ""),
        requested_by=d.get("requested_by", ""),
        reason=d.get("reason", ""),
    )


def export_progress(d: Mapping[str, Any]) -> ExportProgress:
    """``export.progress`` data."""
    return ExportProgress(
        request_id=d["request_id"],
        destination=d["destination"],
        attempt=d["attempt"],
        instances=_export_instances(d["instances"]),
    )


def export_completed(d: Mapping[str, Any]) -> ExportCompleted:
    """``export.completed`` data."""
    return ExportCompleted(
        request_id=d["request_id"],
        destination=d["destination"],
        attempt=d["attempt"],
        instances=_export_instances(d["instances"]),
    )


def export_failed(d: Mapping[str, Any]) -> ExportFailed:
    """``export.failed`` data."""
    return ExportFailed(
        request_id=d["request_id"],
        destination=d["destination"],
        attempt=d["attempt"],
        error=d["error"],
        will_retry=d["will_retry"],
        retry_at=d.get("retry_at", 0),
        instances=_export_instances(d.get("instances", ())),
    )


def export_retry_requested(d: Mapping[str, Any]) -> ExportRetryRequested:
    """``export.retry_requested`` data."""
    return ExportRetryRequested(
        request_id=d["request_id"],
        destination=d.get("destination", ""),
        requested_by=d.get("requested_by", ""),
        reason=d.get("reason", ""),
    )
