"""C-ECHO and C-STORE handlers: short, never raise, return named statuses (STYLE.md §7).

A C-STORE is answered Success only once the instance file is on disk and its
``instance.received`` event is durable (Kafka ack or outbox; DESIGN.md §4). The data
set is written exactly as received, behind a Part 10 header composed from the request.
What is refused before anything is stored (:mod:`streams.scp.checks`): an Affected SOP
Instance UID that is not a UID (0x0117), a data set that cannot be parsed (0xC000) or
that is not the instance the request names (0xA900). Odd Study/Series UIDs and
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
from streams.events import InstanceReceived, envelope
from streams.scp.bridge import EventSink
from streams.scp.checks import (
    CANNOT_PARSE,
    DATA_SET_MISMATCH,
    IDENTITY_TAGS,
    INVALID_SOP_INSTANCE,
    identity_problem,
    is_valid_uid,
)
from streams.scp.delivery import DeliveryError
from streams.scp.gate import AssociationGate
from streams.scp.tags import (
    CORE_TAGS,
    PATIENT_ID,
    SERIES_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    TagReadError,
    format_tag,
    parse_tag,
    read_tags,
)
from streams.storage import SpaceGuard, instance_path, part10_header, path_to_uri, write_atomic

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Annex B.2.3, PS3.7 Annex C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC211
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
    ) -> None:
        self.storage = storage.absolute()
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
        """C-STORE: store, publish, answer; any unexpected error → 0xC211, logged."""
        try:
            request = event.request
            return self._store(
                event.assoc,
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
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        data: bytes | bytearray,
    ) -> int:
        """:meth:`on_store` for a request already taken apart (the fast receive path).

        ``data`` is the data set exactly as received. Never raises.
        """
        try:
            return self._store(
                assoc,
                sop_class=sop_class_uid,
                sop_uid=sop_instance_uid,
                transfer_syntax=transfer_syntax_uid,
                data=data,
            )
        except Exception as exc:
            return self._unexpected(exc)

    @staticmethod
    def _unexpected(exc: Exception) -> int:
        log.error("C-STORE failed unexpectedly (%s); answered 0xC211", type(exc).__name__)
        log.debug("C-STORE failure", exc_info=exc)
        metrics.instance_refused("unknown", CANNOT_UNDERSTAND)
        return CANNOT_UNDERSTAND

    @staticmethod
    def _refused(called_ae: str, status: int) -> int:
        metrics.instance_refused(called_ae, status)
        return status

    def _store(
        self,
        assoc: Any,
        *,
        sop_class: str,
        sop_uid: str,
        transfer_syntax: str,
        data: bytes | bytearray,
    ) -> int:
        received_at = self._clock()
        info = self._gate.info(assoc)
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
                "%s: SOP Instance UID %r is not a valid UID; refused 0x0117", called, sop_uid[:80]
            )
            return self._refused(called, INVALID_SOP_INSTANCE)
        if self._guard is not None and not self._guard.available():
            log.warning("%s: storage is below its free-space watermark; refused 0xA700", called)
            return self._refused(called, OUT_OF_RESOURCES)
        wanted, extra = self._wanted.get(called, (BASE_TAGS, ()))
        try:
            values = read_tags(data, transfer_syntax, wanted)
        except TagReadError as exc:
            # The parser's message may quote values: details (possible PHI) only at DEBUG.
            log.warning(
                "%s: instance %s: data set cannot be parsed; refused 0xC000", called, sop_uid
            )
            log.debug("instance %s: %s", sop_uid, exc)
            return self._refused(called, CANNOT_PARSE)
        problem = identity_problem(values, sop_class, sop_uid)
        if problem is not None:
            log.warning("%s: instance %s: %s; refused 0xA900", called, sop_uid, problem)
            return self._refused(called, DATA_SET_MISMATCH)
        patient_id = values.get(PATIENT_ID, "")
        study_uid = values.get(STUDY_INSTANCE_UID, "")
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
            log.error("cannot store instance %s: %s; answered 0xA700", sop_uid, exc.strerror)
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
            tags={format_tag(t): values[t] for t in extra if t in values},
        )
        env = envelope(record, source=self._source, time_ms=received_at)
        try:
            self._sink.deliver(self._topic, f"{called}/{patient_id}", env)
        except DeliveryError as exc:
            log.error(
                "instance %s stored but its event is not durable (%s); answered 0xA700",
                sop_uid,
                exc,
            )
            return self._refused(called, OUT_OF_RESOURCES)
        return SUCCESS
