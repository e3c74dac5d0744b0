"""The local outbox: events that are durable on disk but not yet acknowledged by Kafka.

One append-only JSON-lines file, ``<storage>/.outbox/events.jsonl``, one event per
line (``{"topic": ..., "key": ..., "event": <envelope>}``), and a ``checkpoint`` file
holding the byte offset up to which every line has been acknowledged by Kafka.

* :meth:`Outbox.append` writes lines and fsyncs once (group commit) before returning:
  after that the C-STORE may be answered with Success.
* :meth:`Outbox.read` returns complete lines after the checkpoint, in order; the
  drainer publishes them (same event ids) and then :meth:`Outbox.commit`\\s the offset.
* A torn last line (a crash mid-write) is cut off when the outbox is opened; an
  undecodable line elsewhere is logged and skipped, never published half.
* When everything is acknowledged :meth:`Outbox.reset_if_drained` deletes both files.

A crash between publish and commit re-publishes some events with the same ids, which
consumers de-duplicate; nothing acknowledged is ever lost. All methods are thread-safe.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from streams.errors import AdapterError
from streams.events import Envelope, EventDecodeError, decode, encode
from streams.storage import fsync_dir, write_atomic

log = logging.getLogger(__name__)

LOG_NAME = "events.jsonl"
CHECKPOINT_NAME = "checkpoint"
LOCK_NAME = "lock"


class OutboxError(AdapterError):
    """The outbox cannot be used (e.g. another process holds it)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event waiting for Kafka: where it goes and the envelope itself."""

    topic: str
    key: str
    envelope: Envelope


def encode_entry(entry: OutboxEntry) -> bytes:
    """One JSON line (with its trailing newline)."""
    return (
        b'{"topic":'
        + orjson.dumps(entry.topic)
        + b',"key":'
        + orjson.dumps(entry.key)
        + b',"event":'
        + encode(entry.envelope)
        + b"}\n"
    )


def decode_entry(line: bytes) -> OutboxEntry:
    """Parse one line; raises :class:`~streams.events.EventDecodeError` if malformed."""
    try:
        obj = orjson.loads(line)
        topic, key, event = obj["topic"], obj["key"], obj["event"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise EventDecodeError(f"malformed outbox line: {exc}") from None
    if not isinstance(topic, str) or not isinstance(key, str):
        raise EventDecodeError("malformed outbox line: topic and key must be strings")
    return OutboxEntry(topic=topic, key=key, envelope=decode(orjson.dumps(event)))


class Outbox:
    """Append-only event log under ``directory`` with an acknowledged-offset checkpoint.

    Opening takes an exclusive ``flock`` on ``directory/lock`` (one SCP per storage) and
    repairs a torn tail. Call :meth:`close` when done.
    """

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        self._lock = threading.Lock()
        self._log_path = directory / LOG_NAME
        self._ckpt_path = directory / CHECKPOINT_NAME
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxError(
                f"outbox {directory} is in use by another process; give each SCP its own adapter_id"
            ) from None
        self._writer: IO[bytes] | None = None
        self._size = self._repair_tail()
        self._committed = min(self._read_checkpoint(), self._size)

    # -- opening -------------------------------------------------------------------

    def _repair_tail(self) -> int:
        """Cut a torn last line (no newline) left by a crash; returns the file size."""
        try:
            size = self._log_path.stat().st_size
        except FileNotFoundError:
            return 0
        if size == 0:
            return 0
        with open(self._log_path, "rb+") as f:
            # Find the last newline, reading backwards in blocks.
            end = size
            while end > 0:
                start = max(0, end - 65536)
                f.seek(start)
                block = f.read(end - start)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    good = start + nl + 1
                    break
                end = start
            else:
                good = 0
            if good != size:
                log.warning(
                    "outbox %s: cutting a torn last line (%d bytes) left by a crash",
                    self._log_path,
                    size - good,
                )
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
            return good

    def _read_checkpoint(self) -> int:
        try:
            text = self._ckpt_path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return max(0, int(text))
        except ValueError:
            log.warning("outbox checkpoint %s is unreadable; replaying from the start", text)
            return 0

    # -- state -----------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of lines not yet acknowledged (0 = empty)."""
        with self._lock:
            return self._size - self._committed

    # -- writing -----------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> None:
        """Append encoded lines (see :func:`encode_entry`) and fsync once."""
        if not lines:
            return
        data = b"".join(lines)
        with self._lock:
            if self._writer is None:
                created = not self._log_path.exists()
                self._writer = open(self._log_path, "ab")  # noqa: SIM115 - kept open
                if created and self.durable:
                    fsync_dir(self.directory)
            try:
                self._writer.write(data)
                self._writer.flush()
                if self.durable:
                    os.fsync(self._writer.fileno())
            except OSError:
                # Leave no half-written line behind for the next append to extend.
                self._writer.close()
                self._writer = None
                os.truncate(self._log_path, self._size)
                raise
            self._size += len(data)

    # -- draining ----------------------------------------------------------------------

    def read(self, max_entries: int = 1000) -> tuple[list[OutboxEntry], int]:
        """Up to ``max_entries`` complete entries after the checkpoint, in order.

        Returns the entries and the offset to :meth:`commit` once they are all acked.
        Undecodable lines are logged and skipped (their bytes are covered by the offset).
        """
        with self._lock:
            start, end = self._committed, self._size
        if start >= end:
            return [], start
        entries: list[OutboxEntry] = []
        offset = start
        with open(self._log_path, "rb") as f:
            f.seek(start)
            while offset < end and len(entries) < max_entries:
                line = f.readline(end - offset)
                if not line.endswith(b"\n"):
                    break
                try:
                    entries.append(decode_entry(line))
                except EventDecodeError as exc:
                    log.error("outbox line at byte %d skipped: %s", offset, exc)
                offset += len(line)
        return entries, offset

    def commit(self, offset: int) -> None:
        """Record that every line before ``offset`` is acknowledged by Kafka."""
        with self._lock:
            if offset <= self._committed:
                return
            self._committed = min(offset, self._size)
            committed = self._committed
        write_atomic(self._ckpt_path, [str(committed).encode()], durable=False)

    def offsets(self) -> tuple[int, int]:
        """(acknowledged offset, file size) — for tests and metrics."""
        with self._lock:
            return self._committed, self._size

    def reset_if_drained(self) -> bool:
        """Delete the log and checkpoint when everything is acknowledged; True if empty."""
        with self._lock:
            if self._committed < self._size:
                return False
            if self._size == 0 and self._writer is None:
                return True
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._log_path.unlink(missing_ok=True)
            self._ckpt_path.unlink(missing_ok=True)
            self._size = self._committed = 0
            return True

    def close(self) -> None:
        """Close the log and release the lock (pending lines stay for the next start)."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._lock_fd >= 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = -1
