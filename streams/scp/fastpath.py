"""The fast C-STORE receive path: pynetdicom's DUL with two of its costs taken out.

Profiling the SCP (docs/benchmarks.md, "Ingest") showed pynetdicom spending most of its
CPU per instance on machinery around the data, not on the data: each P-DATA-TF PDU is
copied four or five times on its way to a ``BytesIO``, the command set is decoded and
the response encoded through pydicom datasets, every message hops through the
association thread's 1 ms polling loop, and the DUL thread polls its socket with 1 ms
sleeps, so each PDU waits for the next tick.

:class:`FastStoreDUL` is the SCP's hardened DUL (:class:`streams.scp.dul.GuardedDUL`,
pynetdicom's ``DULServiceProvider`` made safe against races) for one accepted
association with two changes; everything else (association negotiation, release,
abort, C-ECHO, timers, every state other than Sta6) is pynetdicom's own code:

* **No polling sleep for incoming data.** When the socket has nothing to read the
  reactor waits in ``select`` for up to 1 ms (pynetdicom's own tick) instead of
  sleeping blind, so a PDU is read as soon as it arrives.
* **C-STORE-RQ handled in place.** In Sta6 (association established) a P-DATA-TF PDU
  is exactly "P-DATA indication, stay in Sta6" (PS3.8 §9.2, DT-2), so the DUL takes the
  PDVs apart itself: command fragments are collected and parsed with
  :mod:`streams.scp.wire`; if the message is a C-STORE-RQ on an accepted context,
  its data set fragments are appended to one buffer, and once the last one arrives
  the store callback (the SCP's :meth:`~streams.scp.handlers.StoreHandler.store`,
  the same code as the ``EVT_C_STORE`` handler) runs and the C-STORE-RSP goes out in
  one write. A C-STORE-RQ for a SOP class that is not a storage class, or without a
  data set, is refused here; pynetdicom would drop it unanswered (the port fuzz
  found senders left waiting). Any other message (C-ECHO, an unknown command,
  anything malformed) is handed, fragment for fragment, to pynetdicom's DIMSE
  provider exactly as DT-2 would have.

The callback runs on the DUL thread, so the next PDU is read only after the response
is sent; DICOM senders wait for each response anyway (the SCP negotiates one
outstanding operation, pynetdicom's default). C-STOREs taken this way do not fire
pynetdicom's ``EVT_DATA_RECV``, ``EVT_PDU_RECV``, ``EVT_DIMSE_RECV`` or ``EVT_C_STORE``
notifications. Written against pynetdicom 3.0 (the hooks of
:class:`~streams.scp.dul.GuardedDUL` and ``_is_transport_event``); the tested releases
and the internals used are in :mod:`streams.scp.compat`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

from streams.scp.dul import GuardedDUL
from streams.scp.statuses import CANNOT_UNDERSTAND, SOP_CLASS_NOT_SUPPORTED, describe
from streams.scp.wire import (
    C_STORE_RQ,
    NO_DATA_SET,
    P_DATA_TF,
    Pdv,
    WireError,
    c_store_rsp,
    command_pdu,
    command_uid,
    command_us,
    iter_pdvs,
    parse_command,
)

log = logging.getLogger(__name__)

#: Longest wait for incoming data before the reactor checks its queues and timers again
#: (pynetdicom's own loop delay).
IDLE_WAIT_S = 0.001

_ESTABLISHED = "Sta6"


StoreCallback = Callable[[Any, str, str, str, bytearray], int]
"""What the fast path calls for a complete C-STORE-RQ: ``(assoc, sop_class_uid,
sop_instance_uid, transfer_syntax_uid, data) -> status``
(:meth:`~streams.scp.handlers.StoreHandler.store`)."""


@dataclass(slots=True)
class _Incoming:
    """A message being received: its context, command bytes and (fast) data set."""

    context_id: int
    command: bytearray = field(default_factory=bytearray)
    command_done: bool = False
    data: bytearray = field(default_factory=bytearray)
    request: _StoreRequest | None = None


@dataclass(frozen=True, slots=True)
class _StoreRequest:
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    has_data_set: bool = True  # False: nothing follows the command, answer at once
    refusal: int | None = None  # answered with this status, nothing stored


class FastStoreDUL(GuardedDUL):
    """The DUL of one accepted association (:class:`GuardedDUL`), with the fast C-STORE path.

    ``store`` handles complete C-STORE-RQs; ``storage_classes`` are the SOP classes it
    takes (anything else goes to pynetdicom).
    """

    def __init__(self, assoc: Any, store: StoreCallback, storage_classes: frozenset[str]) -> None:
        super().__init__(assoc)
        # The reactor waits in select() (see _is_transport_event), not in sleep().
        self._run_loop_delay = 0
        self._store_callback = store
        self._storage_classes = storage_classes
        self._incoming: _Incoming | None = None
        self._passthrough = False
        self._broken = False  # a message pynetdicom could not decode: abort pending

    # -- the reactor's two hooks ------------------------------------------------------

    def _is_transport_event(self) -> bool:
        raw = getattr(self.socket, "socket", None)
        # Over TLS, decrypted bytes can wait in the SSL buffer while the descriptor has
        # nothing more: select() would then sleep the whole tick on data already here.
        buffered = isinstance(raw, ssl.SSLSocket) and raw.pending() > 0
        if raw is not None and not buffered and self.state_machine.current_state != "Sta13":
            # A closed socket raises here; pynetdicom's own check below reports it.
            with contextlib.suppress(OSError, ValueError):
                select.select([raw], [], [], IDLE_WAIT_S)
        return bool(super()._is_transport_event())

    def _on_pdu(self, pdu_type: int, header: bytes, body: bytearray) -> None:
        if pdu_type != P_DATA_TF or self.state_machine.current_state != _ESTABLISHED:
            super()._on_pdu(pdu_type, header, body)
            return
        try:
            pdvs = list(iter_pdvs(memoryview(body)))
        except WireError as exc:
            log.error("unable to decode the received P-DATA-TF PDU: %s", exc)
            self.event_queue.put("Evt19")
            return
        for pdv in pdvs:
            self._on_pdv(pdv)

    # -- helpers for the standard path -------------------------------------------------

    def _forward(
        self, context_id: int, control: int, fragment: bytes | bytearray | memoryview
    ) -> None:
        """Give one PDV to pynetdicom's DIMSE provider, as DT-2 does."""
        primitive = P_DATA()
        # pynetdicom checks for [id, bytes] *lists* (its annotation says tuples).
        pdv: Any = [context_id, bytes([control]) + bytes(fragment)]
        primitive.presentation_data_value_list = [pdv]
        try:
            self.assoc.dimse.receive_primitive(primitive)
        except Exception as exc:
            # pynetdicom's DIMSE decoder raises on some malformed command sets (one
            # without CommandDataSetType, say), which would kill the reactor with a
            # traceback: answer as for any invalid PDU instead (PS3.8 AA-8, A-ABORT).
            log.error("malformed DIMSE message (%s); aborting the association", type(exc).__name__)
            self.assoc.dimse.message = None
            self._passthrough = False
            self._incoming = None
            self._broken = True
            self.event_queue.put("Evt19")
            return
        self._passthrough = self.assoc.dimse.message is not None

    # -- message assembly -----------------------------------------------------------

    def _on_pdv(self, pdv: Pdv) -> None:
        if self._broken:
            return
        if self._passthrough:
            self._forward(pdv.context_id, _control(pdv), pdv.fragment)
            return
        msg = self._incoming
        if msg is None:
            if not pdv.is_command:
                self._forward(pdv.context_id, _control(pdv), pdv.fragment)
                return
            msg = self._incoming = _Incoming(pdv.context_id)
        if pdv.context_id != msg.context_id or pdv.is_command == msg.command_done:
            self._give_up(msg, pdv)
            return
        if pdv.is_command:
            msg.command += pdv.fragment
            if pdv.is_last:
                msg.command_done = True
                msg.request = self._store_request(msg)
                if self._broken:
                    self._incoming = None
                elif msg.request is None:
                    self._give_up(msg, None)
                elif not msg.request.has_data_set:
                    self._incoming = None  # nothing follows the command: answer now
                    self._serve(msg.request, msg.context_id, msg.data)
            return
        msg.data += pdv.fragment
        if pdv.is_last:
            self._incoming = None
            assert msg.request is not None
            self._serve(msg.request, msg.context_id, msg.data)

    def _give_up(self, msg: _Incoming, pdv: Pdv | None) -> None:
        """Hand ``msg`` (so far) and ``pdv`` to pynetdicom instead."""
        self._incoming = None
        self._forward(msg.context_id, 0x03 if msg.command_done else 0x01, msg.command)
        if msg.data:
            self._forward(msg.context_id, 0x00, msg.data)
        if pdv is not None:
            self._forward(pdv.context_id, _control(pdv), pdv.fragment)

    def _store_request(self, msg: _Incoming) -> _StoreRequest | None:
        """The C-STORE-RQ in ``msg``'s command, if the fast path takes it.

        It takes every C-STORE-RQ on an accepted context (extended negotiation aside),
        including those pynetdicom would drop without an answer (its
        ``is_valid_request``): without an Affected SOP Instance UID or a Priority
        (the store callback judges the UID), for a SOP class that is not a storage
        class, or with no data set (both refused here). One without a Message ID
        cannot be answered: the association is aborted.
        """
        try:
            values = parse_command(msg.command)
        except WireError:
            return None
        sop_class = command_uid(values, 0x0002)
        context = self.assoc._accepted_cx.get(msg.context_id)
        if (
            command_us(values, 0x0100) != C_STORE_RQ
            or context is None  # pynetdicom aborts the association for this
            or sop_class in self.assoc.acceptor.accepted_common_extended
        ):
            return None
        message_id = command_us(values, 0x0110)
        if message_id is None:
            log.error("C-STORE-RQ without a Message ID; aborting the association")
            self._broken = True
            self.event_queue.put("Evt19")
            return None
        has_data_set = command_us(values, 0x0800) not in (None, NO_DATA_SET)
        refusal = None
        if not has_data_set:
            refusal = CANNOT_UNDERSTAND
        elif sop_class not in self._storage_classes:
            refusal = SOP_CLASS_NOT_SUPPORTED
        return _StoreRequest(
            message_id,
            sop_class,
            command_uid(values, 0x1000),
            str(context.transfer_syntax[0]),
            has_data_set,
            refusal,
        )

    def _serve(self, request: _StoreRequest, context_id: int, data: bytearray) -> None:
        if request.refusal is not None:
            log.warning(
                "C-STORE-RQ %s (SOP class %r); refused %s",
                "without a data set" if not request.has_data_set else "for a non-storage class",
                request.sop_class_uid[:80],
                describe(request.refusal),
            )
            status = request.refusal
        else:
            status = self._store_callback(
                self.assoc,
                request.sop_class_uid,
                request.sop_instance_uid,
                request.transfer_syntax_uid,
                data,
            )
        if not self.assoc.is_established:
            return  # released or aborted meanwhile: pynetdicom sends nothing either
        pdu = command_pdu(
            context_id,
            c_store_rsp(
                sop_class_uid=request.sop_class_uid,
                sop_instance_uid=request.sop_instance_uid,
                message_id=request.message_id,
                status=status,
            ),
        )
        peer_max = self.assoc.requestor.maximum_length
        sock = self.socket
        if sock is None or (peer_max and len(pdu) - 6 > peer_max):
            self._respond_via_pynetdicom(request, context_id, status)
            return
        sock.send(pdu)

    def _respond_via_pynetdicom(self, request: _StoreRequest, context_id: int, status: int) -> None:
        """Let pynetdicom fragment the response (a peer with a tiny maximum PDU)."""
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = request.message_id
        rsp.AffectedSOPClassUID = request.sop_class_uid
        rsp.AffectedSOPInstanceUID = request.sop_instance_uid
        rsp.Status = status
        self.assoc.dimse.send_msg(rsp, context_id)


def _control(pdv: Pdv) -> int:
    return (0x01 if pdv.is_command else 0x00) | (0x02 if pdv.is_last else 0x00)


DulFactory = Callable[[Any], DULServiceProvider]
