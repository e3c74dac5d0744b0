"""Job names and deterministic job ids.

Names follow Clara DICOM Adapter's ``FixJobName`` (``Common/ExtensionMethods.cs``; see
reference/clara-dicom-adapter-behaviour.md §2.5 and acceptance case 29) so they are valid
Kubernetes-style names: ``[a-z0-9-]``, no leading, trailing or doubled ``-``, at most 63
characters. Unlike Clara, the timestamp is the group's close time taken from the log
(its deadline), not the wall clock at submission, so a replay yields identical names.
Ids are uuid5 of the group's identity (DESIGN.md §4), so a re-formed group yields the
same job ids and duplicates are detectable.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
import uuid

MAX_JOB_NAME = 63  # Clara's CLARA_JOB_NAME_MAX_LENGTH
JOB_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-stream-adapter:job")
GROUP_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-stream-adapter:group")

_INVALID = re.compile(r"[^a-zA-Z0-9-]")
_DASHES = re.compile(r"-{2,}")


def fix_job_name(name: str) -> str:
    """Reduce ``name`` to ``[a-z0-9-]``, ≤ 63 chars, no edge or doubled ``-`` (Clara).

    Raises :class:`ValueError` when nothing valid is left (Clara's guard throws too).
    """
    fixed = _DASHES.sub("-", _INVALID.sub("-", name)).strip("-")
    fixed = fixed[:MAX_JOB_NAME].rstrip("-").lower()
    if not fixed:
        raise ValueError(f"job name {name!r} has no letters or digits")
    return fixed


def utc_stamp(epoch_ms: int) -> str:
    """``yyyyMMddHHmmss`` in UTC of an epoch-milliseconds time (pure, no clock read)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch_ms // 1000))


def job_name(ae_title: str, pipeline_name: str, close_ms: int) -> str:
    """``<ae>-<pipeline>-<UTC yyyyMMddHHmmss of close_ms>``, fixed as Clara does.

    Equal to ``fix_job_name(f"{ae_title}-{pipeline_name}-{utc_stamp(close_ms)}")``: the
    stamp is digits only, so the fixed prefix is cached per (AE, pipeline).

    >>> job_name("MY_AE", "brain_tumor", 0)
    'my-ae-brain-tumor-19700101000000'
    """
    prefix = _fixed_prefix(ae_title, pipeline_name)
    stamp = utc_stamp(close_ms)
    name = f"{prefix}-{stamp}" if prefix else stamp
    return name[:MAX_JOB_NAME].rstrip("-")


@functools.lru_cache(maxsize=1024)
def _fixed_prefix(ae_title: str, pipeline_name: str) -> str:
    return _DASHES.sub("-", _INVALID.sub("-", f"{ae_title}-{pipeline_name}")).strip("-").lower()


def job_id(
    processor: str,
    ae_title: str,
    pipeline_name: str,
    group_key: str,
    *,
    first_partition: int,
    first_offset: int,
) -> str:
    """Deterministic job id: uuid5 of (processor, AE, pipeline, group key, first input)."""
    identity = "\x1f".join(
        (processor, ae_title, pipeline_name, group_key, f"{first_partition}:{first_offset}")
    )
    return uuid5_text(JOB_ID_NAMESPACE, identity)


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, computed as RFC 4122 §4.3 directly (the
    same text, ~3x faster: two of these per closed group are on the runtime's hot path)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=65_536)
def group_id(ae_title: str, partition: int, first_offset: int) -> str:
    """The id of an open group: uuid5 of its AE title and first input, stable while it
    is open and the same for every replica and replay (``dicom-adapter groups``).
    Cached: the open groups are said twice a second, their ids do not change."""
    return uuid5_text(GROUP_ID_NAMESPACE, f"{ae_title}/{partition}/{first_offset}")
