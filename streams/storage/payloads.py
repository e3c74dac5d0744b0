"""Payload staging: the job's own copy of its instances, safe from the reclaimer.

Layout (Clara's job directory, reference §2.5, with every component sanitised)::

    <storage>/payloads/<job_id>/dcm/<patient>/<study>/<series>/<sop>.dcm

Files are hard links of the received instances (no bytes copied), or copies when the
payload folder is on another file system (``EXDEV``). Staging is idempotent: re-staging
a job after a crash or for a retry leaves a correct payload whatever was there before,
and a file already in place is kept even if its source has since been reclaimed. Every
file appears atomically (link or copy to a hidden temporary name, then ``rename``), so a
crash never leaves half a file under a final name.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.events import GroupInstance
from streams.storage.paths import sanitize_component

log = logging.getLogger(__name__)

PAYLOADS_DIR = "payloads"

LinkFn = Callable[[str, str], None]


class StagingError(Exception):
    """A payload could not be staged; ``retriable`` says whether trying later can help."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class StagedPayload:
    """Where a job's payload is and which files it holds (``instances`` point into it)."""

    path: Path
    instances: tuple[GroupInstance, ...]
    linked: int
    copied: int
    kept: int


def payloads_root(storage: Path) -> Path:
    """``<storage>/payloads``: every job payload lives below here."""
    return storage / PAYLOADS_DIR


def payload_dir(storage: Path, job_id: str) -> Path:
    """``<storage>/payloads/<job_id>`` (the ``payload_uri`` of the job)."""
    return payloads_root(storage) / sanitize_component(job_id)


def staged_path(payload: Path, patient_id: str, instance: GroupInstance) -> Path:
    """Where one instance goes inside a payload folder."""
    return (
        payload
        / "dcm"
        / sanitize_component(patient_id)
        / sanitize_component(instance.study_instance_uid)
        / sanitize_component(instance.series_instance_uid)
        / f"{sanitize_component(instance.sop_instance_uid)}.dcm"
    )


def stage_payload(
    storage: Path,
    job_id: str,
    patient_id: str,
    instances: Sequence[GroupInstance],
    *,
    link: LinkFn = os.link,
) -> StagedPayload:
    """Hard-link (or copy) ``instances`` into the job's payload folder.

    Raises :class:`StagingError`: not retriable when a source file is gone and the
    payload does not hold it already (the instance cannot come back by waiting);
    retriable for other OS errors (disk full, permissions fixed by an operator, ...).
    Duplicate SOP instances collapse into one file, as in Clara.
    """
    payload = payload_dir(storage, job_id)
    try:
        (payload / "dcm").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StagingError(f"cannot create the payload folder: {exc}", retriable=True) from exc
    staged: list[GroupInstance] = []
    seen: set[Path] = set()
    counts = {"linked": 0, "copied": 0, "kept": 0}
    for instance in instances:
        target = staged_path(payload, patient_id, instance)
        if target in seen:
            continue
        seen.add(target)
        counts[place_file(Path(instance.uri), target, link)] += 1
        staged.append(
            GroupInstance(
                sop_instance_uid=instance.sop_instance_uid,
                study_instance_uid=instance.study_instance_uid,
                series_instance_uid=instance.series_instance_uid,
                uri=str(target),
            )
        )
    log.debug("staged job %s: %s", job_id, counts)
    return StagedPayload(payload, tuple(staged), counts["linked"], counts["copied"], counts["kept"])


def place_file(source: Path, target: Path, link: LinkFn = os.link) -> str:
    """Put ``source`` at ``target`` atomically (hard link, else copy); returns how:
    ``linked``, ``copied`` or ``kept``. Raises :class:`StagingError`."""
    try:
        if target.exists() and (not source.exists() or _same(source, target)):
            return "kept"
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)
        try:
            link(str(source), str(temp))
            how = "linked"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            # Another file system, or one without hard links: copy the bytes instead.
            shutil.copy2(source, temp)
            how = "copied"
        os.replace(temp, target)
        return how
    except FileNotFoundError as exc:
        if not source.exists():
            raise StagingError(
                f"instance file {source} is missing, so the payload cannot be staged; "
                "the instance must be sent again",
                retriable=False,
            ) from exc
        raise StagingError(f"staging {source} failed: {exc}", retriable=True) from exc
    except OSError as exc:
        # The target path holds the PatientID (PHI): name only the source.
        raise StagingError(f"staging {source} failed: {exc}", retriable=True) from exc


def _same(source: Path, target: Path) -> bool:
    """The target already holds the source: the same inode, or a copy (size and mtime)."""
    a, b = source.stat(), target.stat()
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return True
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def remove_payload(storage: Path, job_id: str) -> tuple[int, int]:
    """Delete a job's payload folder; returns ``(files, bytes_freed)``.

    Only bytes of files that had no other hard link count as freed (a staged hard link
    of a still-present instance frees nothing). Refuses anything outside
    ``<storage>/payloads``.
    """
    return remove_folder(payloads_root(storage), payload_dir(storage, job_id))


def remove_folder(root: Path, target: Path) -> tuple[int, int]:
    """Delete ``target``, a folder directly under ``root``; returns ``(files, bytes_freed)``
    (bytes of files that had no other hard link). Refuses any other folder."""
    root = root.resolve()
    if target.resolve().parent != root:
        raise ValueError(f"refusing to delete {target}: not a folder directly under {root}")
    files = freed = 0
    if not target.exists():
        return 0, 0
    for dirpath, _dirs, names in os.walk(target):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            files += 1
            if st.st_nlink <= 1:
                freed += st.st_size
    shutil.rmtree(target, ignore_errors=False)
    return files, freed
