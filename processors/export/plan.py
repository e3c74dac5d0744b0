"""What an exporter does next (pure; time is a parameter): batches and due destinations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from processors.export.state import ExportState, FileState


def plan_batches(files: Sequence[FileState], batch_size: int) -> list[tuple[FileState, ...]]:
    """``files`` cut into batches of at most ``batch_size`` (one association or one
    STOW-RS request each), in request order."""
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
    return [tuple(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]


def attemptable(state: ExportState) -> bool:
    """Open, and its request is known (outcomes without a request are only shown)."""
    return state.requested and state.is_open


def due(states: Iterable[ExportState], now_ms: int) -> list[ExportState]:
    """Open exports whose next attempt is due at ``now_ms``: pending ones, and failed ones
    whose ``retry_at`` has passed; oldest round first."""
    ready = [
        s for s in states if attemptable(s) and (s.status == "pending" or s.retry_at <= now_ms)
    ]
    return sorted(ready, key=lambda s: (s.pending_since, s.request_id, s.destination))


def next_due_at(states: Iterable[ExportState]) -> int | None:
    """Epoch ms of the earliest next attempt (0 for pending ones); None if none is open."""
    times = [0 if s.status == "pending" else s.retry_at for s in states if attemptable(s)]
    return min(times) if times else None
