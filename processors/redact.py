"""What ``events`` and ``jobs`` hide unless ``--show-phi``: patient identifiers.

The events keep the Patient ID (``patient_id``) and whatever tags a processor asked
for (``tags``: Patient Name, Birth Date...), because processors need them; an auditor
reading the log usually does not. Hidden: ``patient_id``, every ``tags`` value, a
``group_key`` unless it is a Study or Series Instance UID (a Patient ID, or the value
of any other grouping tag, may identify a patient; also in the ``groups`` list of a
``groups.open``), and a record key written before
keys were hashed (``<AE>/<PatientID>``). The fields stay, so scripts keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.events import is_hashed_key

REDACTED = "<redacted>"
#: Grouping tags whose values are UIDs, not patient data (Study, Series Instance UID).
UID_GROUPINGS = frozenset({"0020000D", "0020000E"})


def redact_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (an event's ``data``, or a job's JSON) with patient identifiers hidden."""
    out = dict(data)
    if out.get("patient_id"):
        out["patient_id"] = REDACTED
    tags = out.get("tags")
    if isinstance(tags, Mapping):
        out["tags"] = dict.fromkeys(tags, REDACTED)
    if out.get("group_key") and out.get("group_by") not in UID_GROUPINGS:
        out["group_key"] = REDACTED
    groups = out.get("groups")  # groups.open: a list of open groups, each with its key
    if isinstance(groups, list):
        out["groups"] = [redact_data(g) if isinstance(g, Mapping) else g for g in groups]
    key = out.get("key")
    if isinstance(key, str) and key and not is_hashed_key(key):
        out["key"] = REDACTED
    return out


def redact_envelope(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON envelope with :func:`redact_data` applied to its ``data``."""
    out = dict(envelope)
    if isinstance(out.get("data"), Mapping):
        out["data"] = redact_data(out["data"])
    return out
