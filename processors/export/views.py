"""What ``dicom-adapter export list/show`` and ``GET /exports/{id}`` show of an export.

One JSON shape for both (no patient data: request ids, destinations, SOP Instance UIDs,
file URIs under the storage folder, statuses and errors that name no patient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.export.state import ExportState, FileState


def describe(state: ExportState) -> str:
    """``completed``, ``pending``, ``failed (retrying)`` or ``dead``."""
    return {"failed": "failed (retrying)"}.get(state.status, state.status)


def summary(state: ExportState) -> dict[str, Any]:
    """One request at one destination, without its files (``export list --json``)."""
    return {
        "request_id": state.request_id,
        "destination": state.destination,
        "state": state.status,
        "attempts": state.attempts,
        "files": len(state.files),
        "delivered": state.delivered,
        "job_id": state.job_id or None,
        "requested_by": state.requested_by or None,
        "requested_at": state.requested_at or None,
        "completed_at": state.completed_at or None,
        "retry_at": state.retry_at or None,
        "last_error": state.last_error or None,
        "retry_requests": state.retry_requests,
    }


def file_view(f: FileState) -> dict[str, Any]:
    """One file of a request at one destination."""
    status = "sent" if f.delivered else ("refused" if f.given_up else "owed")
    return {
        "uri": f.uri,
        "sop_instance_uid": f.sop_instance_uid or None,
        "status": status,
        "code": f.code,
        "error": f.error or None,
    }


def detail(state: ExportState) -> dict[str, Any]:
    """Everything about one request at one destination."""
    return {
        **summary(state),
        "reason": state.reason or None,
        "files": [file_view(f) for f in state.files],
        "history": [
            {"time": h.time, "event": h.event, "attempt": h.attempt, "detail": h.detail}
            for h in state.history
        ],
    }


def request_view(states: Sequence[ExportState]) -> dict[str, Any]:
    """A whole request: its overall state and every destination's detail."""
    overall = "completed"
    if any(s.is_open for s in states):
        overall = "in progress"
    elif any(s.status == "dead" for s in states):
        overall = "dead"
    return {
        "request_id": states[0].request_id if states else None,
        "state": overall,
        "destinations": [detail(s) for s in states],
    }
