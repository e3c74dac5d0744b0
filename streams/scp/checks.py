"""What the SCP checks in a C-STORE-RQ before it stores anything.

A C-STORE is stored and answered Success only if it identifies one instance: its
Affected SOP Instance UID is a UID, and the data set, as far as it is read, is that
instance of that SOP class. Anything else gets the failure status the standard names
for it (PS3.4 Annex B.2.3, PS3.7 Annex C; the codes are in :mod:`streams.scp.statuses`)
and nothing is stored or published; the port fuzz and the bad-input tests (issue 8) found
junk answered Success before these checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
#: Data set elements that must repeat the request's UIDs (SOP Common module, type 1).
IDENTITY_TAGS: tuple[int, ...] = (SOP_CLASS_UID, SOP_INSTANCE_UID)

#: A UID as PS3.5 §9.1 builds it: numeric components separated by ".", at most 64
#: characters. Leading zeros in a component (a common non-conformance) are tolerated:
#: such a UID still identifies an instance and is safe in a path.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
MAX_UID_LENGTH = 64


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a UID (PS3.5 §9.1); an empty value is not."""
    return len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None


def identity_problem(values: Mapping[int, str], sop_class_uid: str, sop_uid: str) -> str | None:
    """Why a data set (its ``values`` read by tag) is not the instance the request names.

    ``None`` when its SOP Class and Instance UIDs (0008,0016), (0008,0018) are those of
    the request; the reason otherwise (names tags, never quotes values).
    """
    found_class = values.get(SOP_CLASS_UID, "")
    found_uid = values.get(SOP_INSTANCE_UID, "")
    if not found_uid:
        return "the data set has no SOP Instance UID (0008,0018)"
    if found_uid != sop_uid:
        return "its SOP Instance UID (0008,0018) is not the request's"
    if not found_class:
        return "the data set has no SOP Class UID (0008,0016)"
    if found_class != sop_class_uid:
        return "its SOP Class UID (0008,0016) is not the request's"
    return None


__all__ = [
    "IDENTITY_TAGS",
    "MAX_UID_LENGTH",
    "SOP_CLASS_UID",
    "SOP_INSTANCE_UID",
    "identity_problem",
    "is_valid_uid",
]
