"""Event records and their wire format (DESIGN.md §3.3)."""

from streams.events import records
from streams.events.control import (
    SOURCE_LOST,
    SOURCE_STOPPED,
    ClockTick,
    GroupCloseRequested,
    SourceHeartbeat,
)
from streams.events.keys import RecordKeys, is_hashed_key
from streams.events.opengroups import GroupsOpen, OpenGroupInfo
from streams.events.records import *  # noqa: F403 (re-exports records.__all__)
from streams.events.serde import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    EventDecodeError,
    decode,
    encode,
    envelope,
    schema_path,
    to_dict,
)

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "SOURCE_LOST",
    "SOURCE_STOPPED",
    "ClockTick",
    "EventDecodeError",
    "GroupCloseRequested",
    "GroupsOpen",
    "OpenGroupInfo",
    "RecordKeys",
    "SourceHeartbeat",
    "decode",
    "encode",
    "envelope",
    "is_hashed_key",
    "schema_path",
    "to_dict",
]
__all__ += records.__all__
