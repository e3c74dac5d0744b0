"""Reading the items of a batch: their DICOM identity first, the whole data set later.

Every problem becomes a ``failed`` :class:`~streams.scu.outcome.SendOutcome` (never an
exception): a missing file, an unreadable one, or bytes that are not a DICOM Part 10
file (PS3.10 §7.1: preamble, ``DICM``, File Meta Information). Messages never hold the
path (payload paths contain the PatientID) nor values read from the file.
"""

from __future__ import annotations

import errno
import io
import logging
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from streams.scu.outcome import (
    CONVERSION,
    MISSING,
    NOT_DICOM,
    UNREADABLE,
    FailureReason,
    SendItem,
    SendOutcome,
    failed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Probe:
    """An item whose identity was read: what the association has to offer for it."""

    index: int
    item: SendItem
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str

    @property
    def pair(self) -> tuple[str, str]:
        """``(sop_class_uid, transfer_syntax_uid)``, what a presentation context needs."""
        return (self.sop_class_uid, self.transfer_syntax_uid)

    def failed(
        self, reason: FailureReason, error: str, transfer_syntax_uid: str = ""
    ) -> SendOutcome:
        """A ``failed`` outcome that keeps what is known of the instance."""
        return failed(
            self.index,
            self.item,
            reason,
            error,
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=self.sop_class_uid,
            transfer_syntax_uid=transfer_syntax_uid or self.transfer_syntax_uid,
        )


class ReadError(Exception):
    """Reading an item failed; ``outcome`` says how (raised only inside this package)."""

    def __init__(self, outcome: SendOutcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


def _open(item: SendItem) -> BinaryIO:
    if item.data is not None:
        return io.BytesIO(item.data)
    if item.path is None:
        raise ValueError("a SendItem needs a path or data")
    return open(item.path, "rb")


def _read(index: int, item: SendItem, **options: Any) -> Dataset:
    try:
        with _open(item) as fp:
            return dcmread(fp, **options)
    except FileNotFoundError:
        raise ReadError(failed(index, item, MISSING, "file not found")) from None
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        raise ReadError(failed(index, item, UNREADABLE, f"cannot read the file: {name}")) from None
    except InvalidDicomError:
        raise ReadError(
            failed(index, item, NOT_DICOM, "not a DICOM Part 10 file (no DICM prefix)")
        ) from None
    except Exception as exc:  # pydicom raises many types for broken files
        log.debug("cannot parse item %d: %s", index, exc)
        raise ReadError(
            failed(index, item, NOT_DICOM, f"cannot parse the file: {type(exc).__name__}")
        ) from None


def probe(index: int, item: SendItem) -> Probe | SendOutcome:
    """Read the SOP Class, SOP Instance and Transfer Syntax UIDs of one item."""
    try:
        ds = _read(
            index,
            item,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
    except ReadError as exc:
        return exc.outcome
    meta = getattr(ds, "file_meta", None) or Dataset()
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or "")
    sop_instance = str(
        ds.get("SOPInstanceUID", "") or meta.get("MediaStorageSOPInstanceUID", "") or ""
    )
    missing = [
        name
        for name, value in (
            ("Transfer Syntax UID", syntax),
            ("SOP Class UID", sop_class),
            ("SOP Instance UID", sop_instance),
        )
        if not value
    ]
    if missing:
        return failed(
            index,
            item,
            NOT_DICOM,
            f"the file has no {' or '.join(missing)}",
            sop_instance_uid=sop_instance,
            sop_class_uid=sop_class,
            transfer_syntax_uid=syntax,
        )
    return Probe(index, item, sop_class, sop_instance, syntax)


def load(entry: Probe) -> Dataset:
    """The whole data set of a probed item; raises :class:`ReadError`."""
    return _read(entry.index, entry.item)


def decompress(entry: Probe, ds: Dataset) -> Dataset:
    """Decode compressed pixel data in place (to Explicit VR Little Endian), keeping the
    SOP Instance UID.

    Needs a pixel data plugin for the syntax (pydicom's own RLE decoder, Pillow for
    JPEG / JPEG 2000, pylibjpeg or pyjpegls for JPEG-LS); raises :class:`ReadError`
    with a ``conversion`` outcome naming the syntax when none can.
    """
    try:
        # Same instance, another encoding: pydicom 3 would give it a new SOP Instance UID
        # by default, and the peer would hold an instance nobody asked to export.
        ds.decompress(generate_instance_uid=False)
    except Exception as exc:  # plugins raise RuntimeError, ValueError, NotImplementedError
        log.debug("cannot decompress item %d: %s", entry.index, exc)
        raise ReadError(
            entry.failed(
                CONVERSION,
                f"the peer refused {_ts_name(entry.transfer_syntax_uid)} and decompressing "
                f"failed ({type(exc).__name__}); install a pixel data plugin for it or let "
                "the peer accept it",
            )
        ) from None
    return ds


def _ts_name(uid: str) -> str:
    return str(UID(uid).name)
