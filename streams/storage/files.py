"""Durable, atomic file writes: temp file in the same directory, fsync, rename.

A reader (processor, reclaimer, a human with ``ls``) sees either the old file or the
new one, never half of one; after :func:`write_atomic` returns the bytes survive a
power cut (file fsync, rename, directory fsync).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

#: What :func:`write_atomic` writes: any bytes-like chunk.
Chunk = bytes | bytearray | memoryview


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or creation inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path, durable: bool) -> None:
    """``mkdir -p`` that fsyncs each parent whose entry it created (when durable)."""
    if directory.is_dir():
        return
    missing: list[Path] = []
    d = directory
    while not d.is_dir():
        missing.append(d)
        d = d.parent
    for m in reversed(missing):
        try:
            m.mkdir()
        except FileExistsError:
            continue  # another association made it first
        if durable:
            fsync_dir(m.parent)


def write_atomic(
    path: Path, chunks: Iterable[Chunk] | Sequence[Chunk], *, durable: bool = True
) -> int:
    """Write ``chunks`` to ``path`` atomically (replacing any existing file).

    Parent directories are created. Returns the number of bytes written. With
    ``durable`` (the default) the data and the rename are fsynced before returning.
    Raises ``OSError`` on failure, leaving no temp file behind. If a directory on the
    way vanishes meanwhile (the reclaimer removes empty ones) and ``chunks`` is a
    sequence, the write is retried a few times.
    """
    attempts = _ATTEMPTS if isinstance(chunks, Sequence) else 1
    for attempt in range(attempts):
        try:
            return _write_once(path, chunks, durable)
        except FileNotFoundError:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


_ATTEMPTS = 3


def _write_once(path: Path, chunks: Iterable[Chunk], durable: bool) -> int:
    directory = path.parent
    _make_dirs(directory, durable)
    # Dot-prefixed: sanitised names never start with a dot, so no collision is possible.
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    size = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(directory)
    return size
