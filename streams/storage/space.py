"""Disk watermark: refuse to store when free space would dip into the reserve.

The rule is Clara DICOM Adapter's ``StorageInfoProvider`` (reference case 34)::

    reserved = max(total * (100 - watermark_percent) / 100, reserve_space_gb * 10**9)
    available  iff  free > reserved        (strict)

:func:`has_space` is the pure rule; :class:`SpaceGuard` applies it to a directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from streams.storage.payloads import PAYLOADS_DIR

GB = 10**9


class DiskUsage(NamedTuple):
    """Total and free bytes of a file system (the subset of ``shutil.disk_usage``)."""

    total: int
    free: int


def reserved_bytes(total: int, watermark_percent: float, reserve_space_gb: float) -> int:
    """Bytes that must stay free: the larger of the watermark's and the fixed reserve."""
    by_watermark = total * (100.0 - watermark_percent) / 100.0
    return int(max(by_watermark, reserve_space_gb * GB))


def has_space(total: int, free: int, watermark_percent: float, reserve_space_gb: float) -> bool:
    """True iff ``free`` is strictly more than the reserved bytes (Clara's rule)."""
    return free > reserved_bytes(total, watermark_percent, reserve_space_gb)


def _disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(total=usage.total, free=usage.free)


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class SpaceGuard:
    """Checks the file system holding ``root`` before each store.

    Job payloads count: they are hard links under ``<root>/payloads`` (the same disk), or,
    when an operator mounted another file system there, copies -- then that file system
    must have room too, or staging would fail after the C-STORE was accepted.

    ``usage`` and ``device`` are injectable so tests can present any disk; the defaults
    ask the OS (a ``statvfs`` and two ``stat``, microseconds, so no caching is needed).
    """

    root: Path
    watermark_percent: float = 85.0
    reserve_space_gb: float = 5.0
    usage: Callable[[Path], DiskUsage] = _disk_usage
    device: Callable[[Path], int | None] = _device

    def available(self) -> bool:
        """True when another instance may be stored under ``root``."""
        for path in self.checked():
            u = self.usage(path)
            if not has_space(u.total, u.free, self.watermark_percent, self.reserve_space_gb):
                return False
        return True

    def checked(self) -> tuple[Path, ...]:
        """The root, and the payloads folder when it is on another file system."""
        payloads = self.root / PAYLOADS_DIR
        other = self.device(payloads)
        if other is not None and other != self.device(self.root):
            return (self.root, payloads)
        return (self.root,)
