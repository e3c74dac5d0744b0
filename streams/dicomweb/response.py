"""The STOW-RS answer (pure): per-instance results → HTTP status and Store Instances Response.

PS3.18 §10.5.3: 200 when every instance was stored, 202 when some were and others
failed, 409 when none was (a conflict such as an unsupported SOP class or a Study
Instance UID mismatch, "or a mixture of reasons"); the body is a Store Instances
Response (Annex I) in the DICOM JSON model (PS3.18 Annex F): ``ReferencedSOPSequence``
(0008,1199) for the stored ones, ``FailedSOPSequence`` (0008,1198) with a
``FailureReason`` (0008,1197) for the others.

Failure reasons are the store path's PS3.4 statuses (:mod:`streams.scp.statuses`), which
are the codes of PS3.18 Table I.2-2 where that table has one: A700 out of resources,
A900 data set does not match its SOP class, C000 cannot understand (also: a part that
is not a DICOM Part 10 file), 0122 SOP class not supported, 0110 processing failure
(here: not the study of the URL). The others are "additional codes" the table allows:
0117 invalid SOP Instance UID, C211 an unexpected error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.scp.statuses import SUCCESS

REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"


@dataclass(frozen=True, slots=True)
class PartResult:
    """What became of one part: the store path's status (0x0000 = stored and durable)."""

    sop_class_uid: str
    sop_instance_uid: str
    status: int

    @property
    def stored(self) -> bool:
        """The instance is durable (or deliberately not stored, as C-STORE answers it)."""
        return self.status == SUCCESS


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _item(result: PartResult) -> dict[str, Any]:
    item = {
        REFERENCED_SOP_CLASS_UID: _uid(result.sop_class_uid),
        REFERENCED_SOP_INSTANCE_UID: _uid(result.sop_instance_uid),
    }
    if not result.stored:
        item[FAILURE_REASON] = {"vr": "US", "Value": [result.status]}
    return item


def store_instances_response(results: Sequence[PartResult]) -> tuple[int, dict[str, Any]]:
    """``(HTTP status, Store Instances Response)`` for the parts of one request, in order
    (at least one)."""
    stored = [_item(r) for r in results if r.stored]
    failed = [_item(r) for r in results if not r.stored]
    body: dict[str, Any] = {}
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": stored}
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if stored else 409)
    return status, body
