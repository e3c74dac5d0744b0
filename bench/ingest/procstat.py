"""CPU time and memory of a receiver's whole process tree, read from ``/proc``.

CPU is sampled before and after a send: the sum of ``utime + stime`` of every live
process in the tree (zombies included) plus ``cutime + cstime`` (children already
reaped), so forked per-association children (``storescp --fork``) and several worker
processes are all counted. Memory is the tree's summed resident set, sampled by a
background thread, and each process's own peak (``VmHWM``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after ')' is safe.
    return text[text.rfind(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive (or zombie) right now."""
    tree = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by the tree under ``root`` (reaped children included)."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # Fields after the name: state=0 ... utime=11, stime=12, cutime=13, cstime=14.
        ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / _TICK


def _rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of one process in bytes; zeros if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


@dataclass
class MemoryPeak:
    """Largest summed RSS seen over the tree and the largest single-process VmHWM."""

    tree_rss: int = 0
    process_hwm: int = 0

    @property
    def peak_bytes(self) -> int:
        """The larger of the two (what the tables report)."""
        return max(self.tree_rss, self.process_hwm)


class MemorySampler:
    """Samples the tree's memory every ``interval_s`` in a daemon thread until stopped."""

    def __init__(self, root: int, interval_s: float = 0.2) -> None:
        self.root = root
        self.peak = MemoryPeak()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)

    def start(self) -> MemorySampler:
        """Start sampling; returns self."""
        self._thread.start()
        return self

    def sample(self) -> None:
        """Take one sample now."""
        total = 0
        for pid in tree_pids(self.root):
            rss, hwm = _rss_bytes(pid)
            total += rss
            self.peak.process_hwm = max(self.peak.process_hwm, hwm)
        self.peak.tree_rss = max(self.peak.tree_rss, total)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def stop(self) -> MemoryPeak:
        """Stop, take a last sample and return the peak."""
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak


def cpu_snapshot() -> dict[int, int]:
    """``{pid: utime + stime ticks}`` of every process right now."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                out[int(entry)] = int(fields[11]) + int(fields[12])
    return out


def foreign_cpu_s(before: dict[int, int], after: dict[int, int], exclude_roots: list[int]) -> float:
    """CPU seconds used between two snapshots by processes not under ``exclude_roots``.

    Reports load from other users of the machine during a send. Only processes present
    in both snapshots count (one that started or ended in between is missed), so this
    is a lower bound.
    """
    tree = _children_map()
    mine: set[int] = set()
    todo = list(exclude_roots)
    while todo:
        pid = todo.pop()
        if pid not in mine:
            mine.add(pid)
            todo.extend(tree.get(pid, ()))
    ticks = sum(after[pid] - before[pid] for pid in after.keys() & before.keys() if pid not in mine)
    return max(0, ticks) / _TICK
