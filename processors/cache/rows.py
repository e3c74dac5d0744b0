"""What the cache store answers: small frozen records (no SQL, no HTTP)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from streams.events import GroupInstance, InputOffset, InstanceReceived

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the number of items in the whole listing."""

    items: tuple[T, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Overview:
    """What one AE title's cache holds (cached instances only)."""

    patients: int
    studies: int
    series: int
    instances: int
    size: int


@dataclass(frozen=True, slots=True)
class Counts:
    """The aggregates of a set of cached instances; times are epoch ms."""

    instances: int
    size: int
    first_received_at: int
    last_received_at: int


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """One patient's cached instances, counted."""

    patient_id: str
    studies: int
    series: int
    counts: Counts


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One study's cached instances, counted."""

    study_instance_uid: str
    patient_id: str
    series: int
    counts: Counts


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One series' cached instances, counted."""

    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    counts: Counts


@dataclass(frozen=True, slots=True)
class StudyDetail:
    """A study and each of its series."""

    study: StudySummary
    series: tuple[SeriesSummary, ...]


@dataclass(frozen=True, slots=True)
class CachedInstance:
    """A cached instance as received, and where it was read on the instances topic."""

    instance: InstanceReceived
    position: InputOffset


class Added(enum.Enum):
    """What :meth:`CacheStore.add` did with an instance."""

    INSERTED = "inserted"
    REPLACED = "replaced"  # a newer copy of a SOP Instance UID (last wins)
    UNCHANGED = "unchanged"  # a replay of a stored position, or an older copy


@dataclass(frozen=True, slots=True)
class AddOutcome:
    """The result of :meth:`CacheStore.add`; ``superseded`` is an older cached copy stored
    under another file (to reclaim: nothing else refers to it)."""

    added: Added
    superseded: GroupInstance | None = None


@dataclass(frozen=True, slots=True)
class PendingClaim:
    """A job or removal recorded in the store but not yet confirmed on the ledger."""

    claim_id: str
    kind: str
    event: bytes  # the group.closed envelope as written (orjson)
