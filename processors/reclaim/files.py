"""Deleting instance files safely (Clara's SpaceReclaimerService, reference §4 and case 35).

Each file is deleted, then every folder it leaves empty, walking up to — never
including — the storage root. Nothing outside the storage root is ever touched, nor the
payloads folder (payloads expire separately), nor a file that was written again after
its group closed: the same SOP instance sent again later lands on the same path and
belongs to a newer group, which reclaims it when its own jobs are submitted.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.events import GroupInstance
from streams.storage import PAYLOADS_DIR

log = logging.getLogger(__name__)

#: A file modified this long after its group's last instance was received was rewritten
#: by a later reception (groups close at least 5 s after their last instance; seed).
REWRITE_SLACK_MS = 2000


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What :func:`delete_instances` did."""

    removed: tuple[GroupInstance, ...]  # deleted now, or already gone
    bytes_freed: int
    refused: tuple[GroupInstance, ...]  # outside the storage root or inside payloads
    rewritten: tuple[GroupInstance, ...]  # written again after the group closed: kept


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (its folder resolved, the name kept) is strictly below ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.join(os.path.realpath(path.parent), path.name)
    return real != real_root and os.path.commonpath([real_root, real]) == real_root


def delete_instances(
    storage: Path, instances: Sequence[GroupInstance], *, not_after_ms: int | None = None
) -> DeleteResult:
    """Delete the files of ``instances`` and prune the folders they leave empty.

    ``not_after_ms``: keep a file modified later than this plus :data:`REWRITE_SLACK_MS`
    (``None``: no such check). A file already gone counts as removed.
    """
    payloads = storage / PAYLOADS_DIR
    removed: list[GroupInstance] = []
    refused: list[GroupInstance] = []
    rewritten: list[GroupInstance] = []
    freed = 0
    parents: set[Path] = set()
    for instance in instances:
        path = Path(instance.uri)
        if not path.is_absolute() or not inside(storage, path) or inside(payloads, path):
            log.warning("refusing to delete %s: not an instance file under %s", path, storage)
            refused.append(instance)
            continue
        try:
            st = path.lstat()
        except FileNotFoundError:
            removed.append(instance)
            parents.add(path.parent)
            continue
        if (
            not_after_ms is not None
            and st.st_mtime_ns // 1_000_000 > not_after_ms + REWRITE_SLACK_MS
        ):
            rewritten.append(instance)
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        else:
            if st.st_nlink <= 1:
                freed += st.st_size
        removed.append(instance)
        parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        prune_empty_dirs(parent, storage)
    return DeleteResult(tuple(removed), freed, tuple(refused), tuple(rewritten))


def prune_empty_dirs(start: Path, root: Path) -> None:
    """Remove ``start`` and its parents while they are empty, stopping below ``root``."""
    current = start
    while inside(root, current) and current != current.parent:
        try:
            current.rmdir()
        except FileNotFoundError:
            pass  # already gone (another group's reclaim); its parent may be empty now
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            log.warning("cannot remove folder %s: %s", current, exc)
            return
        current = current.parent
