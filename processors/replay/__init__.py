"""Replay and what-if: the instances log through the processors again, submitting
nothing (issue 16; docs/processing.md "Replay and what-if")."""

from processors.replay.core import (
    CollectingSink,
    Replay,
    ReplayedGroup,
    ReplayResult,
    replay_config,
    replay_processors,
    replay_records,
)
from processors.replay.diff import GroupDiff, Move, diff_groups

__all__ = [
    "CollectingSink",
    "GroupDiff",
    "Move",
    "Replay",
    "ReplayResult",
    "ReplayedGroup",
    "diff_groups",
    "replay_config",
    "replay_processors",
    "replay_records",
]
