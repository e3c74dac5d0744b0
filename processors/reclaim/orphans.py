"""Orphan files: instance files that no durable event announces (pure rules and the scan).

An SCP killed between the file's fsync and its event's acknowledgement leaves a file
that nothing references: the sender never got Success (it sends again, under the same
path or not), no processor will ever group it, no reclaimer delete it. A file is an
orphan when, ``grace`` after it was last written, none of these knows it:

* the reclaimer's ledger (a group not yet reclaimed lists it);
* an SCP outbox under ``<storage>/.outbox/`` (its event waits for Kafka there);
* the instances topic from the file's write time on (the event's log time is later
  than the write; a little slack covers clocks) -- and a file older than what
  retention kept of that topic is given the benefit of the doubt.

The grace only covers the instant between the rename and the publish, and a clock
step; the checks do the rest, so a file of a group that stays open for days is safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.events import EventDecodeError, InstanceReceived
from streams.scp.outbox import LOG_NAME, decode_entry
from streams.scp.service import OUTBOX_DIR
from streams.storage import PAYLOADS_DIR
from streams.storage.exports import EXPORTS_DIR

#: The instance layout: <storage>/<AE>/<study>/<series>/<sop>.dcm
_DEPTH = 4
#: Folders under the storage root that never hold received instances.
_NOT_INSTANCES = frozenset({PAYLOADS_DIR, EXPORTS_DIR})
#: Read the instances topic from this long before the oldest candidate's write.
CLOCK_SLACK_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One instance file as found on disk."""

    uri: str
    mtime_ms: int
    size: int

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """``(AE folder, study, series, SOP)`` as they appear in the path."""
        path = Path(self.uri)
        return path.parents[2].name, path.parents[1].name, path.parent.name, path.stem


def candidates(
    files: Iterable[StoredFile], now_ms: int, grace_ms: int, known: Callable[[str], bool]
) -> list[StoredFile]:
    """Files last written at least ``grace_ms`` ago that ``known`` does not vouch for,
    oldest first."""
    old = (f for f in files if now_ms - f.mtime_ms >= grace_ms and not known(f.uri))
    return sorted(old, key=lambda f: (f.mtime_ms, f.uri))


def read_from_ms(files: Iterable[StoredFile]) -> int | None:
    """Where the instances topic must be read from to find the events of ``files``."""
    oldest = min((f.mtime_ms for f in files), default=None)
    return None if oldest is None else oldest - CLOCK_SLACK_MS


def scan_instance_files(storage: Path) -> Iterator[StoredFile]:
    """Every ``<AE>/<study>/<series>/<sop>.dcm`` under ``storage``; hidden names
    (outboxes, temporary files, the cache) and the payloads and exports folders are
    skipped."""
    yield from _scan(storage, 1)


def _scan(folder: Path, depth: int) -> Iterator[StoredFile]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith(".") or (depth == 1 and entry.name in _NOT_INSTANCES):
            continue
        try:
            if depth < _DEPTH and entry.is_dir(follow_symlinks=False):
                yield from _scan(Path(entry.path), depth + 1)
            elif depth == _DEPTH and entry.name.endswith(".dcm"):
                st = entry.stat(follow_symlinks=False)
                if entry.is_file(follow_symlinks=False):
                    yield StoredFile(entry.path, st.st_mtime_ns // 1_000_000, st.st_size)
        except FileNotFoundError:
            continue  # reclaimed meanwhile


def outbox_uris(storage: Path) -> set[str]:
    """Files whose events are in an SCP outbox (acknowledged lines too: a superset)."""
    uris: set[str] = set()
    root = storage / OUTBOX_DIR
    logs = [root / LOG_NAME, *(p / LOG_NAME for p in _subdirs(root))]
    for log in logs:
        try:
            with open(log, "rb") as f:
                for line in f:
                    uri = _uri_of(line)
                    if uri:
                        uris.add(uri)
        except FileNotFoundError:
            continue
    return uris


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _uri_of(line: bytes) -> str:
    if not line.endswith(b"\n"):
        return ""  # a line being written; complete on the next sweep
    try:
        entry = decode_entry(line)
    except EventDecodeError:
        return ""
    data = entry.envelope.data
    return data.uri if isinstance(data, InstanceReceived) else ""
