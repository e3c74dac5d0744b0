"""The cache's SQLite store: instances by SOP Instance UID, and the outbox of claims.

Every method is one transaction and returns once it is committed (see
:mod:`processors.cache.schema` for durability). A lock serialises callers, so the
runtime's consumer and the HTTP handlers may share one store.

Adding is idempotent and last-wins per SOP Instance UID: the same input position again
(a replay) changes nothing, a newer copy replaces the row (and an older cached copy in
another file is reported as superseded, so its file can be reclaimed), an older copy is
ignored. A released row stays ``released`` when its input is replayed, so a replay never
lists it again.

Claims implement "write the ledger event, then forget the instances" without losing
either: :meth:`claim` marks the instances ``pending`` and stores the event,
:meth:`confirm` releases them once the event is on the ledger, :meth:`abandon` puts them
back when the write failed. Pending claims are re-sent after a crash (their job ids are
deterministic, so a repeat is harmless: the submitter and reclaimer de-duplicate).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from processors.cache import queries
from processors.cache.rows import (
    Added,
    AddOutcome,
    CachedInstance,
    Overview,
    Page,
    PatientSummary,
    PendingClaim,
    SeriesSummary,
    StudyDetail,
    StudySummary,
)
from processors.cache.schema import connect, mark_ready
from streams.errors import AdapterError
from streams.events import GroupInstance, InputOffset, InstanceReceived

JOB = "job"
REMOVAL = "removal"


class ClaimConflictError(AdapterError):
    """Some instances of a claim are no longer cached (another request took them)."""


class CacheStore:
    """One AE title's cache database; see the module docstring."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = path
        self._conn, self.ready = connect(path)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._conn.close()

    def mark_ready(self) -> None:
        """Record that the database is complete (see :mod:`processors.cache.schema`)."""
        with self._tx() as conn:
            mark_ready(conn)
        self.ready = True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # -- writes ------------------------------------------------------------------------

    def add(
        self,
        instance: InstanceReceived,
        position: InputOffset,
        *,
        released: str | None = None,
        now_ms: int = 0,
    ) -> AddOutcome:
        """Record an instance read at ``position``; last wins per SOP Instance UID.

        ``released`` (a reason) stores it as already released (a rebuild does this for
        inputs the ledger shows as consumed).
        """
        with self._tx() as conn:
            return self._add(conn, instance, position, released, now_ms)

    def add_many(
        self, items: Sequence[tuple[InstanceReceived, InputOffset, str | None]], now_ms: int = 0
    ) -> None:
        """:meth:`add` for many instances in one transaction (the rebuild)."""
        with self._tx() as conn:
            for instance, position, released in items:
                self._add(conn, instance, position, released, now_ms)

    def _add(
        self,
        conn: sqlite3.Connection,
        instance: InstanceReceived,
        position: InputOffset,
        released: str | None,
        now_ms: int,
    ) -> AddOutcome:
        old = conn.execute(
            'SELECT partition, "offset", received_at, uri, state, study_instance_uid, '
            "series_instance_uid FROM instances WHERE sop_instance_uid = ?",
            (instance.sop_instance_uid,),
        ).fetchone()
        if old is not None:
            partition, offset, received_at, uri, state, study_uid, series_uid = old
            if (partition, offset) == (position.partition, position.offset):
                return AddOutcome(Added.UNCHANGED)
            same_partition = partition == position.partition
            newer = (
                position.offset > offset
                if same_partition
                else (instance.received_at, position.partition) > (received_at, partition)
            )
            if not newer:
                return AddOutcome(Added.UNCHANGED)
            conn.execute(
                "DELETE FROM instances WHERE sop_instance_uid = ?", (instance.sop_instance_uid,)
            )
        self._insert(conn, instance, position, released, now_ms)
        if old is None:
            return AddOutcome(Added.INSERTED)
        superseded = None
        if state == "cached" and uri != instance.uri:
            superseded = GroupInstance(instance.sop_instance_uid, study_uid, series_uid, uri)
        return AddOutcome(Added.REPLACED, superseded)

    @staticmethod
    def _insert(
        conn: sqlite3.Connection,
        i: InstanceReceived,
        position: InputOffset,
        released: str | None,
        now_ms: int,
    ) -> None:
        conn.execute(
            f"INSERT INTO instances ({queries.INSTANCE_COLUMNS}, state, released_at, "
            "release_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                i.called_ae, i.calling_ae, i.calling_host, i.association_id, i.sop_class_uid,
                i.sop_instance_uid, i.transfer_syntax_uid, i.patient_id, i.study_instance_uid,
                i.series_instance_uid, i.received_at, i.uri, i.size,
                orjson.dumps(dict(i.tags)).decode(), position.partition, position.offset,
                "released" if released else "cached",
                now_ms if released else None,
                released,
            ),
        )  # fmt: skip

    def claim(
        self, claim_id: str, kind: str, event: bytes, sop_uids: Sequence[str], now_ms: int
    ) -> None:
        """Mark cached instances ``pending`` for a job or removal and store its event.

        Raises :class:`ClaimConflictError` (changing nothing) if any of them is not
        cached any more, or the claim id is already used.
        """
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM claims WHERE claim_id = ?", (claim_id,)).fetchone():
                raise ClaimConflictError(f"{kind} {claim_id} was already recorded")
            changed = 0
            for uid in sop_uids:
                changed += conn.execute(
                    "UPDATE instances SET state = 'pending', claim = ? "
                    "WHERE sop_instance_uid = ? AND state = 'cached'",
                    (claim_id, uid),
                ).rowcount
            if changed != len(set(sop_uids)):
                raise ClaimConflictError(
                    f"{len(set(sop_uids)) - changed} of the instances are no longer cached"
                )
            conn.execute(
                "INSERT INTO claims (claim_id, kind, event, state, created_at) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (claim_id, kind, event, now_ms),
            )

    def confirm(self, claim_id: str, now_ms: int) -> int:
        """The claim's event is on the ledger: release its instances; returns how many."""
        with self._tx() as conn:
            (kind,) = conn.execute(
                "SELECT kind FROM claims WHERE claim_id = ?", (claim_id,)
            ).fetchone()
            conn.execute(
                "UPDATE claims SET state = 'written', written_at = ? WHERE claim_id = ?",
                (now_ms, claim_id),
            )
            return int(
                conn.execute(
                    "UPDATE instances SET state = 'released', released_at = ?, "
                    "release_reason = ? WHERE claim = ? AND state = 'pending'",
                    (now_ms, kind, claim_id),
                ).rowcount
            )

    def abandon(self, claim_id: str) -> None:
        """The claim's event could not be written: list its instances again."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE instances SET state = 'cached', claim = NULL "
                "WHERE claim = ? AND state = 'pending'",
                (claim_id,),
            )
            conn.execute("DELETE FROM claims WHERE claim_id = ?", (claim_id,))

    def pending_claims(self) -> list[PendingClaim]:
        """Claims whose event may not be on the ledger yet (oldest first)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT claim_id, kind, event FROM claims WHERE state = 'pending' "
                "ORDER BY created_at, claim_id"
            ).fetchall()
        return [PendingClaim(str(c), str(k), bytes(e)) for c, k, e in rows]

    def prune_released(self, before_ms: int) -> int:
        """Forget instances released before ``before_ms`` and claims written before it
        (their inputs are long committed; a replay cannot meet them again)."""
        with self._tx() as conn:
            removed = conn.execute(
                "DELETE FROM instances WHERE state = 'released' AND released_at < ?",
                (before_ms,),
            ).rowcount
            conn.execute(
                "DELETE FROM claims WHERE state = 'written' AND written_at < ?", (before_ms,)
            )
        return int(removed)

    # -- reads ---------------------------------------------------------------------------

    def overview(self) -> Overview:
        """Counts of everything cached."""
        with self._read() as conn:
            return queries.overview(conn)

    def patients(self, limit: int = 100, offset: int = 0) -> Page[PatientSummary]:
        """Cached patients by PatientID."""
        with self._read() as conn:
            return queries.patients(conn, limit, offset)

    def studies(
        self, limit: int = 100, offset: int = 0, patient_id: str | None = None
    ) -> Page[StudySummary]:
        """Cached studies by Study Instance UID (of one patient if given)."""
        with self._read() as conn:
            return queries.studies(conn, limit, offset, patient_id)

    def series(
        self, limit: int = 100, offset: int = 0, study_uid: str | None = None
    ) -> Page[SeriesSummary]:
        """Cached series by Series Instance UID (of one study if given)."""
        with self._read() as conn:
            return queries.series(conn, limit, offset, study_uid)

    def study(self, study_uid: str) -> StudyDetail | None:
        """One cached study and its series, or ``None``."""
        with self._read() as conn:
            return queries.study(conn, study_uid)

    def cached_instances(self, study_uids: Sequence[str]) -> list[CachedInstance]:
        """Every cached instance of ``study_uids``, oldest first."""
        with self._read() as conn:
            return queries.cached_instances(conn, study_uids)

    def state_of(self, sop_uid: str) -> str | None:
        """``cached``, ``pending``, ``released`` or ``None`` (unknown SOP Instance UID)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT state FROM instances WHERE sop_instance_uid = ?", (sop_uid,)
            ).fetchone()
        return None if row is None else str(row[0])
