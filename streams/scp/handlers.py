"""C-ECHO and C-STORE handlers: short, never raise, return named statuses (STYLE.md §7).

A C-STORE is answered Success only once the instance file is on disk and its
``instance.received`` event is durable (Kafka ack or outbox; DESIGN.md §4). The data
set is written exactly as received, behind a Part 10 header composed from the request.
What is refused before anything is stored (:mod:`streams.scp.checks`): an Affected SOP
Instance UID that is not a UID (0x0117), a SOP class that is not a storage class
(0x0122), a data set that cannot be parsed (0xC000) or that is not the instance the
request names (0xA900). STOW-RS (:mod:`streams.dicomweb`) stores through the same
:meth:`StoreHandler.store_instance`. Odd Study/Series UIDs and
Patient IDs are stored as received, under sanitised path components.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from streams import metrics
from streams.events import InstanceReceived, RecordKeys, envelope
from streams.scp.appender import DeliveryError
from streams.scp.bridge import EventSink
from streams.scp.checks import IDENTITY_TAGS, identity_problem, is_valid_uid
from streams.scp.failures import traceback_without_message
from streams.scp.gate import AssociationGate, AssociationInfo
from streams.scp.negotiation import STORAGE_CLASSES
from streams.scp.statuses import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    INVALID_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    STUDY_MISMATCH,
    SUCCESS,
    UNEXPECTED_ERROR,
    describe,
)
from streams.scp.tags import (
    CORE_TAGS,
    PATIENT_ID,
    SERIES_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    TagReadError,
    parse_tag,
    read_tags,
    tag_key,
)
from streams.storage import SpaceGuard, instance_path, part10_header, path_to_uri, write_atomic

log = logging.getLogger(__name__)

#: Tags read from every data set: the event's and the instance's identity.
BASE_TAGS: tuple[int, ...] = tuple(sorted({*CORE_TAGS, *IDENTITY_TAGS}))

#: Implementation Class UID / Version Name written into file meta (pynetdicom's, since
#: pynetdicom is the implementation that received the data).
IMPLEMENTATION_CLASS_UID: str = str(PYNETDICOM_IMPLEMENTATION_UID)
IMPLEMENTATION_VERSION_NAME: str = str(PYNETDICOM_IMPLEMENTATION_VERSION)


def epoch_ms() -> int:
    """Wall clock in epoch milliseconds (the default event-time clock)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AeOptions:
    """Per called-AE behaviour of the store handler.

    ``tags``: extra tags (``"0020000D"``, ``"(0008,0050)"``...) copied into the event's
    ``tags`` under their 8-hex-digit form; ``overwrite``: store a re-sent SOP Instance
    UID again (and publish again) rather than skip it; ``ignored_sop_classes``:
    answered Success, neither stored nor published (Clara's ``ignoredSopClasses``).
    """

    tags: tuple[str, ...] = ()
    overwrite: bool = True
    ignored_sop_classes: frozenset[str] = field(default_factory=frozenset)


class StoreHandler:
    """``EVT_C_STORE`` / ``EVT_C_ECHO`` handlers of the SCP.

    ``clock`` returns epoch milliseconds (``received_at``); ``guard`` applies the disk
    watermark (``None`` disables it); ``durable`` fsyncs every file.
    """

    def __init__(
        self,
        *,
        storage: Path,
        gate: AssociationGate,
        sink: EventSink,
        topic: str,
        source: str,
        ae_options: Mapping[str, AeOptions] | None = None,
        guard: SpaceGuard | None = None,
        clock: Callable[[], int] = epoch_ms,
        durable: bool = True,
        keys: RecordKeys | None = None,
    ) -> None:
        self.storage = storage.absolute()
        self._keys = keys or RecordKeys()
        self._gate = gate
        self._sink = sink
        self._topic = topic
        self._source = source
        self._guard = guard
        self._clock = clock
        self._durable = durable
        self._options = dict(ae_options or {})
        self._default = AeOptions()
        # Tags to read per AE, parsed once: (all tags to read, extra tags for ``tags``).
        self._wanted: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for ae, opts in self._options.items():
            extra = tuple(dict.fromkeys(parse_tag(t) for t in opts.tags))
            self._wanted[ae] = (tuple(sorted({*BASE_TAGS, *extra})), extra)

    def on_echo(self, event: Any) -> int:
        """C-ECHO: always Success on an accepted association (PS3.7 §9.1.5)."""
        return SUCCESS

    def on_store(self, event: Any) -> int:
        """C-STORE: store, publish, answer; any unexpected error → 0xC211, logged.

        Statuses: :mod:`streams.scp.statuses`.
        """
        try:
            request = event.request
            return self._store(
                self._gate.info(event.assoc),
                sop_class=str(request.AffectedSOPClassUID or ""),
                sop_uid=str(request.AffectedSOPInstanceUID or ""),
                transfer_syntax=str(event.context.transfer_syntax),
                data=request.DataSet.getvalue(),
            )
        except Exception as exc:
            return self._unexpected(exc)

    def store(
        self,
        assoc: Any,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        data: bytes | bytearray,
    ) -> int:
        """:meth:`on_store` for a request already taken apart (the fast receive path).

        ``data`` is the data set exactly as received. Never raises.
        """
        try:
            origin = self._gate.info(assoc)
        except Exception as exc:
            return self._unexpected(exc)
        return self.store_instance(
            origin,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            data=data,
        )

    def store_instance(
        self,
        origin: AssociationInfo,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        data: bytes | bytearray | memoryview,
        study_instance_uid: str | None = None,
    ) -> int:
        """The one store path of C-STORE and STOW-RS: checks, watermark, atomic durable
        write, ``instance.received``, delivery (Kafka ack or outbox). Returns the PS3.4
        status (:mod:`streams.scp.statuses`); never raises. Blocking: call it from a
        thread other than the event loop's (the delivery runs on that loop).

        ``origin`` says who sent it (for STOW-RS: the HTTP client, see docs/dicomweb.md);
        ``study_instance_uid``, when given, must be the data set's Study Instance UID
        (STOW-RS ``/studies/{StudyInstanceUID}``), else 0x0110 and nothing is stored.
        """
        try:
            return self._store(
                origin,
                sop_class=sop_class_uid,
                sop_uid=sop_instance_uid,
                transfer_syntax=transfer_syntax_uid,
                data=data,
                study=study_instance_uid,
            )
        except Exception as exc:
            return self._unexpected(exc)

    @staticmethod
    def _unexpected(exc: Exception) -> int:
        log.error(
            "C-STORE failed unexpectedly (%s); answered %s",
            type(exc).__name__,
            describe(UNEXPECTED_ERROR),
        )
        log.debug("C-STORE failure", exc_info=exc)
        metrics.instance_refused("unknown", UNEXPECTED_ERROR)
        return UNEXPECTED_ERROR

    @staticmethod
    def _refused(called_ae: str, status: int) -> int:
        metrics.instance_refused(called_ae, status)
        return status

    def _store(
        self,
        info: AssociationInfo,
        *,
        sop_class: str,
        sop_uid: str,
        transfer_syntax: str,
        data: bytes | bytearray | memoryview,
        study: str | None = None,
    ) -> int:
        received_at = self._clock()
        called = info.called_ae
        metrics.instance_received(called)
        opts = self._options.get(called, self._default)
        if sop_class in opts.ignored_sop_classes:
            log.warning(
                "%s: SOP class %s is ignored for this AE title; not stored", called, sop_class
            )
            return SUCCESS
        if not is_valid_uid(sop_uid):
            # The SOP Instance UID names the file and identifies the instance in every
            # event; one that breaks the UID rules cannot (PS3.7 Annex C, 0117H
            # "Invalid SOP Instance": a violation of the UID construction rules).
            log.warning(
                "%s: SOP Instance UID %r is not a valid UID; refused %s",
                called,
                sop_uid[:80],
                describe(INVALID_SOP_INSTANCE),
            )
            return self._refused(called, INVALID_SOP_INSTANCE)
        if sop_class not in STORAGE_CLASSES:
            # The C-STORE paths only see storage classes (negotiation and the fast path
            # check first); STOW-RS parts name theirs in the file meta.
            log.warning(
                "%s: SOP class %r is not a storage class; refused %s",
                called,
                sop_class[:80],
                describe(SOP_CLASS_NOT_SUPPORTED),
            )
            return self._refused(called, SOP_CLASS_NOT_SUPPORTED)
        if self._guard is not None and not self._guard.available():
            log.warning(
                "%s: storage is below its free-space watermark; refused %s",
                called,
                describe(OUT_OF_RESOURCES),
            )
            return self._refused(called, OUT_OF_RESOURCES)
        wanted, extra = self._wanted.get(called, (BASE_TAGS, ()))
        try:
            values = read_tags(data, transfer_syntax, wanted)
        except TagReadError as exc:
            # The parser's message may quote values: details (possible PHI) only at DEBUG.
            log.warning(
                "%s: instance %s: data set cannot be parsed; refused %s",
                called,
                sop_uid,
                describe(CANNOT_UNDERSTAND),
            )
            log.debug("instance %s: %s", sop_uid, exc)
            return self._refused(called, CANNOT_UNDERSTAND)
        problem = identity_problem(values, sop_class, sop_uid)
        if problem is not None:
            log.warning(
                "%s: instance %s: %s; refused %s",
                called,
                sop_uid,
                problem,
                describe(DATA_SET_MISMATCH),
            )
            return self._refused(called, DATA_SET_MISMATCH)
        patient_id = values.get(PATIENT_ID, "")
        study_uid = values.get(STUDY_INSTANCE_UID, "")
        if study is not None and study_uid != study:
            log.warning(
                "%s: instance %s is not of the study the request names; refused %s",
                called,
                sop_uid,
                describe(STUDY_MISMATCH),
            )
            return self._refused(called, STUDY_MISMATCH)
        series_uid = values.get(SERIES_INSTANCE_UID, "")
        path = instance_path(self.storage, called, study_uid, series_uid, sop_uid)
        if not opts.overwrite and path.exists():
            log.info(
                "instance %s already exists, skipping (overwrite is off for %s)", sop_uid, called
            )
            return SUCCESS
        header = part10_header(
            sop_class_uid=sop_class,
            sop_instance_uid=sop_uid,
            transfer_syntax_uid=transfer_syntax,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            source_ae_title=info.calling_ae,
        )
        try:
            size = write_atomic(path, (header, data), durable=self._durable)
        except OSError as exc:
            log.error(
                "cannot store instance %s: %s; answered %s",
                sop_uid,
                exc.strerror,
                describe(OUT_OF_RESOURCES),
            )
            return self._refused(called, OUT_OF_RESOURCES)
        metrics.instance_stored(called)
        record = InstanceReceived(
            called_ae=called,
            calling_ae=info.calling_ae,
            calling_host=info.calling_host,
            association_id=info.association_id,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_uid,
            transfer_syntax_uid=transfer_syntax,
            patient_id=patient_id,
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            received_at=received_at,
            uri=path_to_uri(path),
            size=size,
            tags={tag_key(t): values[t] for t in extra if t in values},
            peer_certificate_subject=info.peer_certificate_subject,
        )
        env = envelope(record, source=self._source, time_ms=received_at)
        try:
            self._sink.deliver(self._topic, self._keys(called, patient_id), env)
        except DeliveryError as exc:
            log.error(
                "instance %s stored but its event is not durable (%s); answered %s",
                sop_uid,
                exc,
                describe(OUT_OF_RESOURCES),
            )
            return self._refused(called, OUT_OF_RESOURCES)
        except Exception as exc:
            # The broker's failures went to the outbox; this is a bug in publishing. It
            # gets the unexpected-error answer and, unlike other unexpected errors, its
            # traceback at ERROR: nothing else would point at it (message at DEBUG: PHI).
            log.error(
                "instance %s stored but publishing its event failed with %s, not a broker "
                "error; answered %s\n%s",
                sop_uid,
                type(exc).__name__,
                describe(UNEXPECTED_ERROR),
                traceback_without_message(exc),
            )
            log.debug("instance %s: publishing failed", sop_uid, exc_info=exc)
            return self._refused(called, UNEXPECTED_ERROR)
        return SUCCESS
