"""The SQLite schema of the cache and how a database file is opened.

One file per AE title, ``<storage>/.cache/<AE>.sqlite3`` (the AE title sanitised as any
path component). WAL mode with ``synchronous=FULL``: a committed row survives a crash
or power loss, which is what lets the processor acknowledge an input (its offset may
then be committed) as soon as :meth:`CacheStore.add` returns.

``instances`` keeps every field of the ``instance.received`` event plus its position on
the instances topic and its state: ``cached`` (listed, usable in jobs), ``pending``
(claimed by a job or removal not yet confirmed on the ledger) or ``released`` (used or
deleted; kept for a while so a replay of its input does not list it again). ``claims``
is the outbox of jobs and removals: written before the ledger event, confirmed after.
``meta`` holds ``schema`` and ``ready`` (``1`` once the file is complete: a rebuild
from the topics that stopped halfway leaves it ``0``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from streams.errors import AdapterError
from streams.storage.paths import sanitize_component

SCHEMA_VERSION = 1
CACHE_DIR = ".cache"

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    called_ae TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    calling_host TEXT NOT NULL,
    association_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    tags TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('cached', 'pending', 'released')),
    claim TEXT,
    released_at INTEGER,
    release_reason TEXT
);
CREATE INDEX IF NOT EXISTS cached_by_patient
    ON instances (patient_id, study_instance_uid, series_instance_uid) WHERE state = 'cached';
CREATE INDEX IF NOT EXISTS cached_by_study
    ON instances (study_instance_uid, series_instance_uid) WHERE state = 'cached';
CREATE INDEX IF NOT EXISTS cached_by_series
    ON instances (series_instance_uid) WHERE state = 'cached';
CREATE INDEX IF NOT EXISTS by_claim ON instances (claim) WHERE claim IS NOT NULL;
CREATE INDEX IF NOT EXISTS released ON instances (released_at) WHERE state = 'released';
CREATE TABLE IF NOT EXISTS claims (
    claim_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('job', 'removal')),
    event BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'written')),
    created_at INTEGER NOT NULL,
    written_at INTEGER
);
"""


class CacheDatabaseError(AdapterError):
    """The cache database cannot be used (corrupt, another schema, unwritable)."""


def database_path(storage: Path, ae_title: str) -> Path:
    """``<storage>/.cache/<AE>.sqlite3``. Instance folders are sanitised AE titles, which
    never start with a dot, so the folder cannot collide with an AE title's files."""
    return storage / CACHE_DIR / f"{sanitize_component(ae_title)}.sqlite3"


def connect(path: Path | str) -> tuple[sqlite3.Connection, bool]:
    """Open (creating if needed) a cache database; returns ``(connection, ready)``.

    ``ready`` is False for a new file or one whose rebuild did not finish. The
    connection is in autocommit mode: callers open transactions explicitly. Raises
    :class:`CacheDatabaseError` (one line, with the fix) when the file is unusable.
    """
    try:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _connect(path)
    except (sqlite3.Error, OSError) as exc:
        raise CacheDatabaseError(
            f"cache database {path}: {exc}; fix the file's permissions or move it away "
            "(it is rebuilt from the topics)"
        ) from None


def _connect(path: Path | str) -> tuple[sqlite3.Connection, bool]:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(f"BEGIN IMMEDIATE; {DDL} COMMIT;")
        version = _meta(conn, "schema")
        if version is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?), ('ready', '0')",
                (str(SCHEMA_VERSION),),
            )
        elif version != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema {version}, this adapter reads {SCHEMA_VERSION}")
        return conn, _meta(conn, "ready") == "1"
    except BaseException:
        conn.close()
        raise


def mark_ready(conn: sqlite3.Connection) -> None:
    """Record that the database is complete (after a rebuild, or when none is possible)."""
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'ready'")


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
