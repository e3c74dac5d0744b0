"""Keyed session windows over the instances log (DESIGN.md §4).

:func:`session_window` is the fast custom Rx operator (plain dicts, one sweep timer);
:func:`reference_session_window` is the stock ``group_by_until`` + ``debounce`` chain it
is tested against; :class:`SessionState` is the pure bookkeeping under the operator.
"""

from processors.windows.groups import (
    REASON_FORCED,
    REASON_TIMEOUT,
    ClosedGroup,
    OpenGroup,
)
from processors.windows.operator import SessionWindow, now_ms, session_window
from processors.windows.reference import reference_session_window
from processors.windows.state import SessionState, received_at

__all__ = [
    "REASON_FORCED",
    "REASON_TIMEOUT",
    "ClosedGroup",
    "OpenGroup",
    "SessionState",
    "SessionWindow",
    "now_ms",
    "received_at",
    "reference_session_window",
    "session_window",
]
