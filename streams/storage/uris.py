"""The ``uri`` of a stored instance in ``instance.received``: its absolute file path.

Decision (issue 3): ``uri`` is the absolute POSIX path of the file, e.g.
``/data/CT-AE/1.2.3/1.2.3.4/1.2.3.4.5.dcm`` — what the submitter's staging and the
reclaimer open with ``Path(uri)``. :func:`uri_to_path` also accepts a ``file://`` URI,
so a later move to URIs would not break readers that use it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit


def path_to_uri(path: Path) -> str:
    """The event ``uri`` of a stored file: its absolute path as a string."""
    return str(path.absolute())


def uri_to_path(uri: str) -> Path:
    """The file an event ``uri`` names (an absolute path or a local ``file://`` URI).

    Raises ``ValueError`` for anything else (another scheme, a remote host, a relative
    path).
    """
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r} is not a local file:// URI")
        return Path(unquote(parts.path))
    path = Path(uri)
    if not path.is_absolute():
        raise ValueError(f"{uri!r} is not an absolute file path or a local file:// URI")
    return path
