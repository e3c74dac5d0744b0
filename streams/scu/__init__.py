"""Sending DICOM out: C-STORE SCU over one association, STOW-RS over HTTP.

Both senders take Part 10 files (or bytes) and give back one
:class:`~streams.scu.outcome.SendOutcome` per item; neither raises for a per-item or
per-peer problem. ``streams/`` owns DICOM networking; deciding about retries is the
caller's business (``processors/export``).
"""

from streams.scu import outcome
from streams.scu.contexts import MAX_CONTEXTS, choose, requested_contexts
from streams.scu.cstore import DEFAULT_CALLING_AE, CStoreSender, DicomPeer, ScuTimeouts
from streams.scu.outcome import *  # noqa: F403 (re-exports outcome.__all__)
from streams.scu.stow import StowAuth, StowSender

__all__ = [
    "DEFAULT_CALLING_AE",
    "MAX_CONTEXTS",
    "CStoreSender",
    "DicomPeer",
    "ScuTimeouts",
    "StowAuth",
    "StowSender",
    "choose",
    "requested_contexts",
]
__all__ += outcome.__all__
