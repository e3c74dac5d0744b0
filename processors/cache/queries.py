"""Read queries of the cache (cached instances only), with stable paging.

Listings are ordered by UID (patients by PatientID) so ``limit``/``offset`` pages are
stable while instances arrive; ``total`` counts the whole listing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from processors.cache.rows import (
    CachedInstance,
    Counts,
    Overview,
    Page,
    PatientSummary,
    SeriesSummary,
    StudyDetail,
    StudySummary,
)
from streams.events import InputOffset, InstanceReceived

_CACHED = "state = 'cached'"
#: The columns of :class:`~processors.cache.rows.Counts`, last in every summary query.
_TIMES = "COUNT(*), COALESCE(SUM(size), 0), MIN(received_at), MAX(received_at)"
INSTANCE_COLUMNS = (
    "called_ae, calling_ae, calling_host, association_id, sop_class_uid, sop_instance_uid, "
    "transfer_syntax_uid, patient_id, study_instance_uid, series_instance_uid, received_at, "
    'uri, size, tags, partition, "offset"'
)


def overview(conn: sqlite3.Connection) -> Overview:
    """Counts of everything cached."""
    row = conn.execute(
        "SELECT COUNT(DISTINCT patient_id), COUNT(DISTINCT study_instance_uid), "
        "COUNT(DISTINCT series_instance_uid), COUNT(*), COALESCE(SUM(size), 0) "
        f"FROM instances WHERE {_CACHED}"
    ).fetchone()
    return Overview(*(int(v) for v in row))


def _counted(row: Sequence[Any]) -> tuple[Any, Any, Any, Counts]:
    """A summary row: three identifying columns, then the :data:`_TIMES` aggregates."""
    return row[0], row[1], row[2], Counts(*row[3:])


def patients(conn: sqlite3.Connection, limit: int, offset: int) -> Page[PatientSummary]:
    """Cached patients by PatientID."""
    rows = conn.execute(
        "SELECT patient_id, COUNT(DISTINCT study_instance_uid), "
        f"COUNT(DISTINCT series_instance_uid), {_TIMES} FROM instances WHERE {_CACHED} "
        "GROUP BY patient_id ORDER BY patient_id LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    (total,) = conn.execute(
        f"SELECT COUNT(DISTINCT patient_id) FROM instances WHERE {_CACHED}"
    ).fetchone()
    return Page(tuple(PatientSummary(*_counted(r)) for r in rows), int(total))


def studies(
    conn: sqlite3.Connection, limit: int, offset: int, patient_id: str | None = None
) -> Page[StudySummary]:
    """Cached studies by Study Instance UID, optionally of one patient."""
    where, args = _filter("patient_id", patient_id)
    rows = conn.execute(
        "SELECT study_instance_uid, MIN(patient_id), COUNT(DISTINCT series_instance_uid), "
        f"{_TIMES} FROM instances WHERE {where} GROUP BY study_instance_uid "
        "ORDER BY study_instance_uid LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    (total,) = conn.execute(
        f"SELECT COUNT(DISTINCT study_instance_uid) FROM instances WHERE {where}", args
    ).fetchone()
    return Page(tuple(StudySummary(*_counted(r)) for r in rows), int(total))


def series(
    conn: sqlite3.Connection, limit: int, offset: int, study_uid: str | None = None
) -> Page[SeriesSummary]:
    """Cached series by Series Instance UID, optionally of one study."""
    where, args = _filter("study_instance_uid", study_uid)
    return _series(conn, where, args, limit, offset)


def study(conn: sqlite3.Connection, study_uid: str) -> StudyDetail | None:
    """One cached study with its series, or ``None`` if nothing of it is cached."""
    page = studies_by_uid(conn, [study_uid])
    if not page:
        return None
    where, args = _filter("study_instance_uid", study_uid)
    listed = _series(conn, where, args, -1, 0)
    return StudyDetail(page[0], listed.items)


def studies_by_uid(conn: sqlite3.Connection, uids: Sequence[str]) -> list[StudySummary]:
    """Summaries of those of ``uids`` that are cached (in UID order)."""
    if not uids:
        return []
    marks = ", ".join("?" * len(uids))
    rows = conn.execute(
        "SELECT study_instance_uid, MIN(patient_id), COUNT(DISTINCT series_instance_uid), "
        f"{_TIMES} FROM instances WHERE {_CACHED} AND study_instance_uid IN ({marks}) "
        "GROUP BY study_instance_uid ORDER BY study_instance_uid",
        tuple(uids),
    ).fetchall()
    return [StudySummary(*_counted(r)) for r in rows]


def cached_instances(conn: sqlite3.Connection, study_uids: Sequence[str]) -> list[CachedInstance]:
    """Every cached instance of ``study_uids``, in the order they were read from the log."""
    if not study_uids:
        return []
    marks = ", ".join("?" * len(study_uids))
    rows = conn.execute(
        f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {_CACHED} "
        f'AND study_instance_uid IN ({marks}) ORDER BY received_at, partition, "offset"',
        tuple(study_uids),
    ).fetchall()
    return [to_cached(r) for r in rows]


def to_cached(row: Sequence[Any]) -> CachedInstance:
    """A row selected with :data:`INSTANCE_COLUMNS` as a :class:`CachedInstance`."""
    (ae, calling, host, assoc, cls, sop, ts, patient, study_uid, series_uid) = row[:10]
    received_at, uri, size, tags, partition, offset = row[10:]
    instance = InstanceReceived(
        called_ae=str(ae),
        calling_ae=str(calling),
        calling_host=str(host),
        association_id=str(assoc),
        sop_class_uid=str(cls),
        sop_instance_uid=str(sop),
        transfer_syntax_uid=str(ts),
        patient_id=str(patient),
        study_instance_uid=str(study_uid),
        series_instance_uid=str(series_uid),
        received_at=int(received_at),
        uri=str(uri),
        size=int(size),
        tags=orjson.loads(tags),
    )
    return CachedInstance(instance, InputOffset(int(partition), int(offset)))


def _series(
    conn: sqlite3.Connection, where: str, args: tuple[str, ...], limit: int, offset: int
) -> Page[SeriesSummary]:
    rows = conn.execute(
        "SELECT series_instance_uid, MIN(study_instance_uid), MIN(patient_id), "
        f"{_TIMES} FROM instances WHERE {where} GROUP BY series_instance_uid "
        "ORDER BY series_instance_uid LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    (total,) = conn.execute(
        f"SELECT COUNT(DISTINCT series_instance_uid) FROM instances WHERE {where}", args
    ).fetchone()
    return Page(tuple(SeriesSummary(*_counted(r)) for r in rows), int(total))


def _filter(column: str, value: str | None) -> tuple[str, tuple[str, ...]]:
    if value is None:
        return _CACHED, ()
    return f"{_CACHED} AND {column} = ?", (value,)
