"""Where an instance lives on disk, with every path component sanitised first.

DICOM values are untrusted input: a SOP Instance UID of ``../../x`` or one holding ``/``,
``\\`` or NUL must never leave the storage root (Clara only stripped NUL; reference §6.15).
:func:`sanitize_component` is pure and total: any string maps to one safe file name.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: Placeholder for a missing (empty) value, e.g. an instance without a Study Instance UID.
UNKNOWN = "_unknown"

#: Longest component kept verbatim (UIDs are at most 64 characters, AE titles 16).
MAX_COMPONENT = 128

_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9._-]")
# Altered names end in "~<hash>"; "~" is never kept verbatim, so an altered name can
# never equal an unaltered one, and two different altered values differ in the hash.
_HASH_CHARS = 16
_KEEP_WHEN_ALTERED = 64


def sanitize_component(value: str) -> str:
    """Turn an untrusted value into a single safe path component.

    * Values made only of ``A-Z a-z 0-9 . _ -`` that do not start with ``.`` and are at
      most :data:`MAX_COMPONENT` long (every valid UID) are returned unchanged.
    * An empty value becomes :data:`UNKNOWN`.
    * Anything else (``..``, ``/``, ``\\``, NUL, spaces, a leading dot, over-long values)
      keeps a readable prefix with unsafe characters replaced by ``_`` and gets
      ``~`` plus 16 hex digits of its SHA-256 appended, so it cannot collide with a
      verbatim name.

    The result never contains a path separator, is never ``.`` or ``..`` nor starts with
    ``.`` (names starting with a dot are reserved for the adapter: ``.outbox``, temp
    files), and is at most 128 characters long.
    """
    if not value:
        return UNKNOWN
    if len(value) <= MAX_COMPONENT and value[0] != "." and _SAFE.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    readable = _UNSAFE_CHAR.sub("_", value[:_KEEP_WHEN_ALTERED])
    if readable.startswith("."):
        readable = "_" + readable[1:]
    return f"{readable}~{digest}"


def instance_path(root: Path, ae_title: str, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """``<root>/<ae>/<study>/<series>/<sop>.dcm``, every component sanitised.

    The result is always strictly inside ``root`` (DESIGN.md §4: UIDs are sanitised
    before they touch a path).
    """
    return (
        root
        / sanitize_component(ae_title)
        / sanitize_component(study_uid)
        / sanitize_component(series_uid)
        / f"{sanitize_component(sop_uid)}.dcm"
    )
