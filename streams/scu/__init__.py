"""Sending DICOM out: C-STORE SCU over one association, STOW-RS over HTTP.

Both senders take Part 10 files (or bytes) and give back one
:class:`~streams.scu.outcome.SendOutcome` per item; neither raises for a per-item or
per-peer problem. ``streams/`` owns DICOM networking; deciding about retries is the
caller's business (``processors/export``).
"""

from streams.scu.contexts import MAX_CONTEXTS, choose, requested_contexts
from streams.scu.cstore import DEFAULT_CALLING_AE, CStoreSender, DicomPeer, ScuTimeouts
from streams.scu.outcome import (
    ABORTED,
    BAD_RESPONSE,
    CONNECT,
    DROPPED,
    HTTP_ERROR,
    NOT_CONFIRMED,
    NOT_DICOM,
    NOT_SENT,
    REJECTED_PERMANENT,
    REJECTED_TRANSIENT,
    TIMEOUT,
    UNREADABLE,
    FailureReason,
    ItemLike,
    OutcomeKind,
    Progress,
    SendItem,
    SendOutcome,
    as_items,
    describe_status,
    hex_status,
    status_kind,
)
from streams.scu.stow import StowAuth, StowSender

__all__ = [
    "ABORTED",
    "BAD_RESPONSE",
    "CONNECT",
    "DEFAULT_CALLING_AE",
    "DROPPED",
    "HTTP_ERROR",
    "MAX_CONTEXTS",
    "NOT_CONFIRMED",
    "NOT_DICOM",
    "NOT_SENT",
    "REJECTED_PERMANENT",
    "REJECTED_TRANSIENT",
    "TIMEOUT",
    "UNREADABLE",
    "CStoreSender",
    "DicomPeer",
    "FailureReason",
    "ItemLike",
    "OutcomeKind",
    "Progress",
    "ScuTimeouts",
    "SendItem",
    "SendOutcome",
    "StowAuth",
    "StowSender",
    "as_items",
    "choose",
    "describe_status",
    "hex_status",
    "requested_contexts",
    "status_kind",
]
