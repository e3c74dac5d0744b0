"""The group key of an instance: the value of the AE title's ``groupBy`` tag (seed §13.1.3).

PatientID, StudyInstanceUID and SeriesInstanceUID are fields of every
``instance.received`` event; any other tag is read from the event's ``tags`` (keyed by
8 upper-case hex digits; the processor asks the SCP for it via ``required_tags``).
A missing or blank value means "no key": Clara ignores such instances (§2.3 step 4).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from processors.aetitle.settings import PATIENT_ID, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID
from streams.events import InstanceReceived

# Padding DICOM allows around values (PS3.5 §6.2: spaces for text VRs, NUL for UI).
_PADDING = " \x00\t\r\n"

BUILT_IN_TAGS: dict[str, str] = {
    PATIENT_ID: "patient_id",
    STUDY_INSTANCE_UID: "study_instance_uid",
    SERIES_INSTANCE_UID: "series_instance_uid",
}


def clean_key(value: str | None) -> str | None:
    """The value without DICOM padding, or ``None`` if it is missing or blank."""
    if value is None:
        return None
    cleaned = value.strip(_PADDING)
    return cleaned or None


def group_key_fn(tag: str) -> Callable[[InstanceReceived], str | None]:
    """A function giving an instance's group key for ``tag`` (8 hex digits) or ``None``."""
    tag = tag.upper()
    field = BUILT_IN_TAGS.get(tag)
    if field is not None:
        getter: Callable[[InstanceReceived], str] = attrgetter(field)

        def built_in(instance: InstanceReceived) -> str | None:
            return clean_key(getter(instance))

        return built_in

    def extra(instance: InstanceReceived) -> str | None:
        return clean_key(instance.tags.get(tag))

    return extra


def extra_tags(tag: str) -> tuple[str, ...]:
    """Tags the SCP must add to ``tags`` so ``tag`` can be grouped on."""
    tag = tag.upper()
    return () if tag in BUILT_IN_TAGS else (tag,)
