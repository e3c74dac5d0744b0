"""Value rules shared by the config models: AE titles, Kafka names, URLs.

Each checker takes the already-typed value and raises :class:`ValueError` with a message
that names the bad value and the fix; the problem formatter puts the key path in front.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

AE_TITLE_MAX_LEN = 16  # PS3.5 §6.2, VR "AE"
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]+")
_ADAPTER_ID = re.compile(r"[A-Za-z0-9._-]+")
_DESTINATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Longest topic suffix the adapter appends (".instances"); Kafka topic names are <= 249.
_TOPIC_SUFFIX_LEN = len(".instances")
_KAFKA_TOPIC_MAX = 249
_SECRET_QUERY = re.compile(
    r"((?:^|(?<=[&;]))[^=&;]*(?:token|key|secret|password|passwd|sig|auth)[^=&;]*)=[^&;]*",
    re.IGNORECASE,
)


def check_ae_title(value: str) -> str:
    """Validate a DICOM AE title (PS3.5 §6.2): 1-16 printable ASCII characters, no ``\\``.

    Comparison elsewhere is exact and case-sensitive, so leading or trailing spaces —
    which DICOM says are not significant — are refused rather than silently trimmed.
    """
    if not value.strip():
        raise ValueError("AE title is empty; use 1 to 16 characters, e.g. CLARA-CT")
    if len(value) > AE_TITLE_MAX_LEN:
        raise ValueError(
            f"{value!r} is {len(value)} characters long; DICOM AE titles have at most "
            f"{AE_TITLE_MAX_LEN} (PS3.5 §6.2), shorten it"
        )
    for ch in value:
        if ch == "\\" or ord(ch) < 0x20 or ord(ch) >= 0x7F:
            raise ValueError(
                f"{value!r} contains {ch!r}; AE titles allow printable ASCII only, "
                "no backslash or control characters (PS3.5 §6.2)"
            )
    if value != value.strip(" "):
        raise ValueError(
            f"{value!r} has leading or trailing spaces, which DICOM ignores (PS3.5 §6.2); "
            "remove them"
        )
    return value


def check_adapter_id(value: str) -> str:
    """An adapter id names the adapter in events and consumer groups: ``[A-Za-z0-9._-]+``."""
    if not _ADAPTER_ID.fullmatch(value) or len(value) > 64:
        raise ValueError(
            f"{value!r} is not a valid adapter id; use 1 to 64 letters, digits, '.', '_' "
            "or '-', e.g. adapter-1"
        )
    return value


def check_destination_name(value: str) -> str:
    """An export destination's name (in events, CLI arguments and logs): 1 to 64 of
    ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    if not _DESTINATION.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid destination name; use 1 to 64 letters, digits, '.', "
            "'_' or '-' starting with a letter or digit, e.g. pacs-main"
        )
    return value


def check_topic_prefix(value: str) -> str:
    """Kafka topic names allow ``[A-Za-z0-9._-]`` and at most 249 characters."""
    if not _TOPIC_PREFIX.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid Kafka topic prefix; use letters, digits, '.', '_' "
            "or '-', e.g. dicom"
        )
    if len(value) + _TOPIC_SUFFIX_LEN > _KAFKA_TOPIC_MAX:
        limit = _KAFKA_TOPIC_MAX - _TOPIC_SUFFIX_LEN
        raise ValueError(f"topic prefix is {len(value)} characters long; use at most {limit}")
    return value


def check_bootstrap_servers(value: str) -> str:
    """``host:port[,host:port...]`` with ports 1-65535 (IPv6 hosts in brackets)."""
    example = "use host:port[,host:port], e.g. 127.0.0.1:9092"
    if not value.strip():
        raise ValueError(f"is empty; {example}, or omit it for the embedded broker")
    for item in value.split(","):
        server = item.strip()
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{server!r} in {value!r} is not host:port; {example}")
    return value


def check_http_url(value: str) -> str:
    """An absolute ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{mask_url(value)!r} is not an http(s) URL; use e.g. http://platform:8080/jobs"
        )
    return value


def mask_url(value: str) -> str:
    """Hide secrets in a URL: the password of ``user:password@host`` and the values of
    query parameters named like a credential (``token``, ``key``, ``secret``, ...)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    query = _SECRET_QUERY.sub(r"\1=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
