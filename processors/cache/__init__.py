"""The cache processor: the seed's "Cache Service" example, with a REST API (issue 7).

Configure an AE title with ``processor: cache`` (or
``processor: processors.cache:CacheProcessor``); see docs/custom-processors.md.
"""

from processors.cache.processor import NAME, CacheProcessor
from processors.cache.requests import (
    ClaimedError,
    InvalidRequestError,
    UnavailableError,
    UnknownStudiesError,
)
from processors.cache.rows import (
    Added,
    CachedInstance,
)
from processors.cache.schema import CacheDatabaseError, database_path
from processors.cache.settings import CacheSettings, parse_cache_settings
from processors.cache.store import CacheStore, ClaimConflictError

__all__ = [
    "NAME",
    "Added",
    "CacheDatabaseError",
    "CacheProcessor",
    "CacheSettings",
    "CacheStore",
    "CachedInstance",
    "ClaimConflictError",
    "ClaimedError",
    "InvalidRequestError",
    "UnavailableError",
    "UnknownStudiesError",
    "database_path",
    "parse_cache_settings",
]
