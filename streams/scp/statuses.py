"""Every DIMSE status the SCP answers, each once (as pynetdicom keeps its own in one module).

A C-ECHO on an accepted association is always answered Success (PS3.7 §9.1.5). A
C-STORE gets a status of the Storage Service Class (PS3.4 Annex B.2.3) or one of the
general statuses every DIMSE service may answer (PS3.7 Annex C). When the SCP answers
which is in docs/scp.md; :mod:`streams.scp.handlers` and :mod:`streams.scp.fastpath`
decide, and both import the codes from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class Status(NamedTuple):
    """A status code's constant name and its meaning in the standard (for logs)."""

    name: str
    description: str


#: Success: stored and its event is durable; also every C-ECHO (PS3.4 B.2.3, PS3.7 §9.1.5).
SUCCESS = 0x0000
#: The Affected SOP Instance UID violates the UID construction rules (PS3.7 Annex C).
INVALID_SOP_INSTANCE = 0x0117
#: A STOW-RS part whose Study Instance UID is not the one of the request's URL: a
#: "processing failure" (PS3.7 Annex C; PS3.18 Table I.2-2 0110H, as Orthanc answers).
#: C-STORE never gets it (it names no study).
STUDY_MISMATCH = 0x0110
#: A C-STORE-RQ for a SOP class that is not a storage class (PS3.7 Annex C).
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: Disk below its watermark, the file cannot be written or the event is not durable
#: (PS3.4 B.2.3, A7xx).
OUT_OF_RESOURCES = 0xA700
#: The data set is not the instance the request names (PS3.4 B.2.3, A9xx).
DATA_SET_MISMATCH = 0xA900
#: The data set cannot be parsed, or the request announces none (PS3.4 B.2.3, Cxxx).
CANNOT_UNDERSTAND = 0xC000
#: An unexpected error in the SCP: a code of the Cxxx range, the one pynetdicom answers
#: when a C-STORE handler raises, so both receive paths answer it alike (PS3.4 B.2.3).
UNEXPECTED_ERROR = 0xC211

#: Every status above by code: its name and description.
STATUSES: Mapping[int, Status] = MappingProxyType(
    {
        SUCCESS: Status("SUCCESS", "Success"),
        INVALID_SOP_INSTANCE: Status("INVALID_SOP_INSTANCE", "Invalid SOP Instance"),
        STUDY_MISMATCH: Status("STUDY_MISMATCH", "Processing failure: not the request's study"),
        SOP_CLASS_NOT_SUPPORTED: Status(
            "SOP_CLASS_NOT_SUPPORTED", "Refused: SOP Class Not Supported"
        ),
        OUT_OF_RESOURCES: Status("OUT_OF_RESOURCES", "Refused: Out of Resources"),
        DATA_SET_MISMATCH: Status("DATA_SET_MISMATCH", "Error: Data Set Does Not Match SOP Class"),
        CANNOT_UNDERSTAND: Status("CANNOT_UNDERSTAND", "Error: Cannot Understand"),
        UNEXPECTED_ERROR: Status("UNEXPECTED_ERROR", "Error: Cannot Understand (unexpected error)"),
    }
)


def describe(status: int) -> str:
    """``0xA700`` → ``"0xA700 (Refused: Out of Resources)"``; a code not listed, hex alone."""
    known = STATUSES.get(status)
    return f"0x{status:04X}" if known is None else f"0x{status:04X} ({known.description})"


__all__ = [
    "CANNOT_UNDERSTAND",
    "DATA_SET_MISMATCH",
    "INVALID_SOP_INSTANCE",
    "OUT_OF_RESOURCES",
    "SOP_CLASS_NOT_SUPPORTED",
    "STATUSES",
    "STUDY_MISMATCH",
    "SUCCESS",
    "UNEXPECTED_ERROR",
    "Status",
    "describe",
]
