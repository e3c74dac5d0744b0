"""Export staging: the files of an export request, kept safe until they are delivered.

Layout (every component sanitised)::

    <storage>/exports/<request_id>/<SOPInstanceUID>.dcm

Files uploaded with a request (``POST /exports``, ``dicom-adapter export send``) are
written here; files a request names that are already under the storage folder (received
instances, payloads) are hard-linked here (copied across file systems), as payload
staging does, so the reclaimer deleting the original cannot take them from an open
export. The export role removes a request's folder once every destination holds its
files, or ``export.retention_hours`` after it was dead-lettered (docs/export.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from streams.storage.files import write_atomic
from streams.storage.paths import sanitize_component
from streams.storage.payloads import place_file, remove_folder

EXPORTS_DIR = "exports"


def exports_root(storage: Path) -> Path:
    """``<storage>/exports``: every request's staged files live below here."""
    return storage / EXPORTS_DIR


def export_dir(storage: Path, request_id: str) -> Path:
    """``<storage>/exports/<request_id>`` (sanitised: it can never leave ``exports``)."""
    return exports_root(storage) / sanitize_component(request_id)


def staged_file(storage: Path, request_id: str, sop_instance_uid: str) -> Path:
    """Where one instance of a request is kept."""
    return export_dir(storage, request_id) / f"{sanitize_component(sop_instance_uid)}.dcm"


def link_into_export(storage: Path, request_id: str, sop_instance_uid: str, source: Path) -> Path:
    """Hard-link (or copy) ``source`` into the request's folder; returns the staged path.
    Raises :class:`~streams.storage.payloads.StagingError`."""
    target = staged_file(storage, request_id, sop_instance_uid)
    place_file(source, target, os.link)
    return target


def write_into_export(storage: Path, request_id: str, sop_instance_uid: str, data: bytes) -> Path:
    """Write uploaded Part 10 bytes into the request's folder (atomic, fsynced)."""
    target = staged_file(storage, request_id, sop_instance_uid)
    write_atomic(target, (data,), durable=True)
    return target


def remove_export_dir(storage: Path, request_id: str) -> int:
    """Delete a request's staged files; returns how many there were (0: none)."""
    files, _freed = remove_folder(exports_root(storage), export_dir(storage, request_id))
    return files


def within(storage: Path, path: Path) -> bool:
    """Whether ``path``, with every link and ``..`` resolved, is inside ``storage``."""
    try:
        return path.resolve().is_relative_to(storage.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False
