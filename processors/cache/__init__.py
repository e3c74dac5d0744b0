"""The cache processor: the seed's "Cache Service" example, with a REST API (issue 7).

Configure an AE title with ``processor: cache`` (or
``processor: processors.cache:CacheProcessor``); see docs/custom-processors.md.
"""

from processors.cache.processor import NAME, CacheProcessor
from processors.cache.requests import (
    CacheRequestError,
    ClaimedError,
    InvalidRequestError,
    ReleasedStudy,
    SubmittedJob,
    UnavailableError,
    UnknownAeTitleError,
    UnknownStudiesError,
)
from processors.cache.rows import (
    Added,
    AddOutcome,
    CachedInstance,
    Overview,
    Page,
    PatientSummary,
    SeriesSummary,
    StudyDetail,
    StudySummary,
)
from processors.cache.schema import CacheDatabaseError, database_path
from processors.cache.settings import CacheSettings, parse_cache_settings
from processors.cache.store import CacheStore, ClaimConflictError

__all__ = [
    "NAME",
    "AddOutcome",
    "Added",
    "CacheDatabaseError",
    "CacheProcessor",
    "CacheRequestError",
    "CacheSettings",
    "CacheStore",
    "CachedInstance",
    "ClaimConflictError",
    "ClaimedError",
    "InvalidRequestError",
    "Overview",
    "Page",
    "PatientSummary",
    "ReleasedStudy",
    "SeriesSummary",
    "StudyDetail",
    "StudySummary",
    "SubmittedJob",
    "UnavailableError",
    "UnknownAeTitleError",
    "UnknownStudiesError",
    "database_path",
    "parse_cache_settings",
]
