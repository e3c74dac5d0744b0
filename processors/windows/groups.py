"""What a session window shows of its groups: open snapshots and closed groups."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
M = TypeVar("M")

# Why a group closed (``group.closed`` ``reason``, the ``groups_closed`` metric label).
REASON_TIMEOUT = "timeout"  # quiet for the timeout
REASON_MAX_AGE = "max_age"  # open for maxAge
REASON_FORCED = "forced"  # an operator closed it (group.close_requested)
REASON_COMPLETE = "complete"  # a completion rule said it is complete (completeWhen)


@dataclass(frozen=True, slots=True)
class OpenGroup(Generic[K]):
    """A snapshot of one open group (what operators see of it)."""

    partition: int
    key: K
    first_offset: int
    instances: int
    first_received_at: int
    last_received_at: int
    due: int
    due_reason: str


@dataclass(frozen=True, slots=True)
class ClosedGroup(Generic[K, T, M]):
    """One closed session: what the window emits.

    ``members`` and ``offsets`` are in arrival order (same length); ``opener`` is the
    whole record that opened the group (members may be a smaller projection of it);
    ``deadline`` is when it was due -- ``last_received_at + timeout``, or
    ``first_received_at + max_age`` (``reason`` ``max_age``), or the time of an explicit
    close -- the deterministic close time.
    """

    partition: int
    key: K
    members: tuple[M, ...]
    offsets: tuple[int, ...]
    first_received_at: int
    last_received_at: int
    deadline: int
    opener: T
    reason: str = REASON_TIMEOUT
