"""What a sender gets and gives back: items in, one :class:`SendOutcome` per item out.

Both senders (C-STORE over one association, :mod:`streams.scu.cstore`; STOW-RS,
:mod:`streams.scu.stow`) report in these terms, so whoever decides about retries
(``processors/export``) reads one vocabulary:

* ``sent`` — the peer answered Success or a Warning (PS3.4 B.2.3: 0x0000, 0x0001,
  0xBxxx; PS3.18 ``WarningReason``); the instance is stored there;
* ``refused`` — the peer answered a failure status for this instance (C-STORE-RSP
  ``Status`` or STOW-RS ``FailureReason``, kept in ``status``);
* ``failed`` — no status for this instance: ``reason`` says why (not DICOM, no accepted
  presentation context, the association could not be made or was dropped, ...).

Outcomes never carry file contents, paths or patient data in ``error`` (it goes into
events and logs); ``label`` is the caller's name for the item (a path or a URI).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

OutcomeKind = Literal["sent", "refused", "failed"]

#: ``reason`` of a ``failed`` outcome.
NOT_DICOM: Final = "not_dicom"  # not a DICOM Part 10 file (or its SOP identity is missing)
MISSING: Final = "missing"  # the file does not exist
UNREADABLE: Final = "unreadable"  # the file exists but reading it failed (I/O error, permissions)
NO_CONTEXT: Final = "no_context"  # the peer accepted no presentation context for its SOP class
CONVERSION: Final = "conversion"  # the peer needs another transfer syntax and conversion failed
CONNECT: Final = "connect_failed"  # TCP connection (or TLS) could not be made
REJECTED_TRANSIENT: Final = "rejected_transient"  # A-ASSOCIATE-RJ, result 2 (PS3.8 9.3.4)
REJECTED_PERMANENT: Final = "rejected_permanent"  # A-ASSOCIATE-RJ, result 1
ABORTED: Final = "association_aborted"  # A-ABORT (or a closed connection) during negotiation
DROPPED: Final = "association_dropped"  # the association ended before this instance's answer
TIMEOUT: Final = "timeout"  # no answer within the DIMSE / HTTP timeout
NOT_SENT: Final = "not_sent"  # the batch stopped before this item (e.g. after a drop)
HTTP_ERROR: Final = "http_error"  # STOW-RS: an HTTP error with no per-instance status
NOT_CONFIRMED: Final = "not_confirmed"  # STOW-RS: the answer names neither success nor failure
BAD_RESPONSE: Final = "bad_response"  # STOW-RS: the answer could not be read

FailureReason = Literal[
    "not_dicom",
    "missing",
    "unreadable",
    "no_context",
    "conversion",
    "connect_failed",
    "rejected_transient",
    "rejected_permanent",
    "association_aborted",
    "association_dropped",
    "timeout",
    "not_sent",
    "http_error",
    "not_confirmed",
    "bad_response",
]


@dataclass(frozen=True, slots=True)
class SendItem:
    """One instance to send: a Part 10 file on disk, or Part 10 bytes with a label."""

    label: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def file(cls, path: Path | str, label: str | None = None) -> SendItem:
        """A file; its label defaults to the path."""
        return cls(label if label is not None else str(path), path=Path(path))

    @classmethod
    def of_bytes(cls, data: bytes, label: str) -> SendItem:
        """Part 10 bytes (preamble, ``DICM``, file meta, data set)."""
        return cls(label, data=data)


ItemLike = SendItem | Path | str | bytes


def as_items(items: list[ItemLike] | tuple[ItemLike, ...]) -> list[SendItem]:
    """Normalise paths, strings (paths) and bytes (labelled ``#<index>``) to items."""
    out: list[SendItem] = []
    for index, item in enumerate(items):
        if isinstance(item, SendItem):
            out.append(item)
        elif isinstance(item, bytes):
            out.append(SendItem.of_bytes(item, f"#{index}"))
        else:
            out.append(SendItem.file(item))
    return out


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What happened to one item (``index`` is its position in the batch)."""

    index: int
    label: str
    kind: OutcomeKind
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""  # as sent (after any conversion), or the item's own
    status: int | None = None  # the peer's status for this instance, if it gave one
    reason: FailureReason | None = None  # set when kind is "failed"
    error: str = ""  # short, PHI-free explanation for events and logs
    converted_from: str = ""  # the item's own transfer syntax when it was converted
    http_status: int | None = None  # STOW-RS: HTTP status of the answer

    @property
    def delivered(self) -> bool:
        """The peer holds the instance (Success or Warning)."""
        return self.kind == "sent"


#: Called once per item as soon as its outcome is known (from the sender's thread).
Progress = Callable[[SendOutcome], None]


class BatchSender(ABC):
    """A sender of batches to one destination: :meth:`send_batch` blocks (a worker
    thread's work), :meth:`send` runs it off the event loop."""

    async def send(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        """:meth:`send_batch` in a worker thread (``progress`` is called from there)."""
        return await asyncio.to_thread(self.send_batch, items, progress)

    @abstractmethod
    def send_batch(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        """Send ``items``; one outcome each, in order."""


def status_kind(status: int) -> OutcomeKind:
    """``sent`` for Success and Warning statuses (PS3.7 C.1: 0x0000, 0x0001, 0xBxxx),
    ``refused`` for anything else (failures: 0xA7xx, 0xA9xx, 0xCxxx, 0x01xx, 0x02xx)."""
    if status in (0x0000, 0x0001) or 0xB000 <= status <= 0xBFFF:
        return "sent"
    return "refused"


def hex_status(status: int) -> str:
    """``0xA900``: how DICOM people write statuses."""
    return f"0x{status:04X}"


_MEANINGS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0117: "invalid SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0x0210: "duplicate invocation",
    0x0211: "unrecognized operation",
    0x0212: "mistyped argument",
    0x0213: "resource limitation",
}


def describe_status(status: int) -> str:
    """``0xA700 (out of resources)``: a status with its meaning (PS3.4 B.2.3, PS3.7 C)."""
    if status in _MEANINGS:
        meaning = _MEANINGS[status]
    elif 0xA700 <= status <= 0xA7FF:
        meaning = "out of resources"
    elif 0xA900 <= status <= 0xA9FF:
        meaning = "data set does not match SOP class"
    elif 0xC000 <= status <= 0xCFFF:
        meaning = "cannot understand"
    elif 0xB000 <= status <= 0xBFFF or status == 0x0001:
        meaning = "warning"
    elif status == 0x0000:
        meaning = "success"
    else:
        meaning = "failure"
    return f"{hex_status(status)} ({meaning})"


def failed(
    index: int,
    item: SendItem,
    reason: FailureReason,
    error: str,
    *,
    sop_instance_uid: str = "",
    sop_class_uid: str = "",
    transfer_syntax_uid: str = "",
) -> SendOutcome:
    """A ``failed`` outcome for ``item``."""
    return SendOutcome(
        index,
        item.label,
        "failed",
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        reason=reason,
        error=error,
    )


#: What :mod:`streams.scu` re-exports (outcomes and the reasons of failures).
__all__ = [
    "ABORTED",
    "BAD_RESPONSE",
    "CONNECT",
    "DROPPED",
    "HTTP_ERROR",
    "NOT_CONFIRMED",
    "NOT_DICOM",
    "NOT_SENT",
    "REJECTED_PERMANENT",
    "REJECTED_TRANSIENT",
    "TIMEOUT",
    "UNREADABLE",
    "FailureReason",
    "ItemLike",
    "OutcomeKind",
    "Progress",
    "SendItem",
    "SendOutcome",
    "as_items",
    "describe_status",
    "hex_status",
    "status_kind",
]
