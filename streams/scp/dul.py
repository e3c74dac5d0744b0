"""pynetdicom's DICOM Upper Layer for accepted associations, hardened against races.

pynetdicom 3.0 runs each association in two threads: the association thread (ACSE,
DIMSE, the event handlers) and the DUL reactor, which owns the socket and the PS3.8
§9.2 state machine. The port fuzz (tests/integration/test_scp_bad_input.py) found three
ways a peer could kill the reactor thread or pin its association slot; each is fixed
here, in a subclass, and has a regression test in test_scp_fuzz_findings.py:

* **Events the state table has no cell for.** The association thread queues a
  response (P-DATA request, Evt9) while the reactor has just aborted the association
  for an invalid PDU (AA-8, Sta13) or closed it (Sta1); an A-ABORT request comes
  after the connection is gone; a timer fires in a state that does not expect it.
  pynetdicom raises ``InvalidEventError`` and the reactor thread dies, leaving the
  socket open and the peer unanswered. :class:`GuardedStateMachine` treats such an
  event as stale (PS3.8 Table 9-10 has no action for it): a local request is
  discarded with its primitive (the association it was meant for no longer exists),
  a received PDU is dropped, a timer or transport event is ignored.
* **ARTIM read as expired after it was stopped.** pynetdicom's ``Timer`` keeps
  reporting ``expired`` when it is stopped after its deadline, so an A-ASSOCIATE-RQ
  whose last bytes arrive just after the ARTIM deadline is accepted (AE-6 stops the
  timer) and the next loop raises Evt18 in Sta3. :class:`ArtimTimer` stops for good.
* **Reads without a deadline.** Accepted sockets block forever, so a peer that sends
  half a PDU (or garbage whose length field promises more) and stays quiet holds the
  reactor in ``recv`` and its association slot for as long as it keeps the connection
  open: the association thread gives up after the ACSE timeout but then waits for the
  reactor to stop. :meth:`GuardedDUL._is_transport_event` bounds every read: by the
  ACSE timeout while there is no association (before the A-ASSOCIATE-RQ and after
  an abort or release, when ARTIM runs) and by the network timeout otherwise. And
  :meth:`GuardedDUL.receive_pdu` stops waiting as soon as the connection is closed,
  so a connection the reactor dropped before any A-ASSOCIATE-RQ frees its slot at
  once instead of after the ACSE timeout; conversely a connection whose association
  thread has ended is aborted rather than left to the peer
  (:meth:`GuardedDUL._orphaned`).

Written against pynetdicom 3.0 (``DULServiceProvider.run_reactor``,
``_process_recv_primitive`` and ``receive_pdu``; ``StateMachine.do_action``); the tested
releases and the internals used are in :mod:`streams.scp.compat`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from typing import Any

from pynetdicom.dul import DULServiceProvider
from pynetdicom.fsm import TRANSITION_TABLE, StateMachine
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT, A_RELEASE, P_DATA
from pynetdicom.timer import Timer
from pynetdicom.transport import T_CONNECT

from streams.scp.wire import P_DATA_TF, WireError, pdu_header

log = logging.getLogger(__name__)

#: PDU types of PS3.8 §9.3 (A-ASSOCIATE-RQ 0x01 to A-ABORT 0x07).
PDU_TYPES = frozenset(range(0x01, 0x08))

#: Events raised by a request of the local user (the association thread), PS3.8 §9.2.
LOCAL_EVENTS = frozenset({"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})
#: Events raised by a PDU received from the peer (the PDU waits in ``_recv_pdu``).
PDU_EVENTS = frozenset({"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16"})
#: States without an association: before the A-ASSOCIATE-RQ (Sta1 until the reactor
#: has taken the connection indication, Sta2) and after its end (Sta13); the ARTIM
#: timer bounds them (PS3.8 §9.1.5).
ARTIM_STATES = frozenset({"Sta1", "Sta2", "Sta13"})
#: How often :meth:`GuardedDUL.receive_pdu` checks whether the connection is gone.
RECEIVE_POLL_S = 0.05


def primitive_event(primitive: Any) -> str | None:
    """The event a queued local primitive raises (as ``_process_recv_primitive``)."""
    if isinstance(primitive, T_CONNECT):
        return str(primitive.result)
    if isinstance(primitive, A_ASSOCIATE):
        if primitive.result is None:
            return "Evt1"
        return "Evt7" if primitive.result == 0x00 else "Evt8"
    if isinstance(primitive, A_RELEASE):
        return "Evt11" if primitive.result is None else "Evt14"
    if isinstance(primitive, A_ABORT | A_P_ABORT):
        return "Evt15"
    if isinstance(primitive, P_DATA):
        return "Evt9"
    return None


class ArtimTimer(Timer):
    """pynetdicom's ARTIM timer, except that a stopped timer never reads as expired."""

    def stop(self) -> None:
        """Stop the timer: it is not running, so it cannot expire (PS3.8 §9.1.5)."""
        self._start_time = None
        self._end_time = None


class GuardedStateMachine(StateMachine):
    """pynetdicom's state machine that drops stale events instead of raising.

    ``left_idle`` tells whether it ever left Sta1 (the transport connection was open).
    """

    left_idle = False

    def transition(self, state: str) -> None:
        """Move to ``state`` (pynetdicom's), remembering that the connection was open."""
        super().transition(state)
        if state != "Sta1":
            self.left_idle = True

    def do_action(self, event: str) -> None:
        """Run the action for ``event``; an event the state has no cell for is stale."""
        state = self.current_state
        dul = self.dul
        if event in LOCAL_EVENTS and primitive_event(_head(dul.to_provider_queue)) != event:
            # Raised twice for one primitive (the reactor peeks before the action pops).
            log.debug("stale %s in %s: its primitive was already handled", event, state)
            return
        if (event, state) in TRANSITION_TABLE:
            super().do_action(event)
            return
        if event in LOCAL_EVENTS:
            primitive = dul.to_provider_queue.get_nowait()
            log.info(
                "%s discarded in %s: the association has already ended",
                type(primitive).__name__,
                state,
            )
        elif event in PDU_EVENTS:
            with contextlib.suppress(queue.Empty):
                dul._recv_pdu.get_nowait()
            log.info("PDU received in %s (%s) ignored: the connection is closing", state, event)
        else:
            log.debug("%s ignored in %s", event, state)


def _head(q: queue.Queue[Any]) -> Any:
    try:
        return q.queue[0]
    except IndexError:
        return None


class GuardedDUL(DULServiceProvider):
    """The DUL of one accepted association (see the module docstring)."""

    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self.state_machine: GuardedStateMachine = GuardedStateMachine(self)
        self.artim_timer = ArtimTimer(self.artim_timer.timeout)
        self._read_timeout: float | None = None
        self._reactor_done = False

    def run_reactor(self) -> None:
        """pynetdicom's reactor; if it fails anyway, the connection is closed."""
        try:
            super().run_reactor()
        except Exception as exc:
            log.error("DUL reactor failed (%s); closing the connection", type(exc).__name__)
            log.debug("DUL reactor failure", exc_info=exc)
            sock = self.socket
            if sock is not None and sock.socket is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        finally:
            self._reactor_done = True

    def _is_transport_event(self) -> bool:
        state = self.state_machine.current_state
        if self._orphaned(state):
            self._abort_orphan(state)
            return True
        self._bound_reads(state)
        return bool(super()._is_transport_event())

    def _orphaned(self, state: str) -> bool:
        """The association thread has ended and will never serve this connection.

        pynetdicom's ``Association.kill`` then waits for the DUL to reach Sta1 by
        itself, which in a state without a timer (an A-ASSOCIATE-RQ that completed
        after the association thread stopped waiting for it, say) takes as long as the
        peer keeps the connection open. Sta13 ends by itself (ARTIM); a primitive
        still queued (a release reply, an abort) is sent first.
        """
        return (
            bool(getattr(self.assoc, "_kill", False))
            and state not in ("Sta1", "Sta13")
            and self.to_provider_queue.empty()
        )

    def _abort_orphan(self, state: str) -> None:
        log.warning("association ended while its connection was in %s; aborting it", state)
        abort = A_ABORT_RQ()
        abort.source = 0x02  # service provider (PS3.8 §9.3.8)
        abort.reason_diagnostic = 0x00
        self._send(abort)
        sock = self.socket
        if sock is not None:
            sock.close()  # Evt17: the state machine goes to Sta1

    def _read_pdu_data(self) -> None:
        """Read one PDU: the same reads, checks and events as pynetdicom's.

        A closed, reset or timed-out connection is Evt17 and an unknown or undecodable
        PDU Evt19, each logged in one line (pynetdicom logs a traceback for each).
        The complete PDU goes to :meth:`_on_pdu`.
        """
        sock = self.socket
        if sock is None:
            self.event_queue.put("Evt17")
            return
        try:
            header = bytes(sock.recv(6))
            if not header:  # an orderly close (FIN) between PDUs
                self._peer_closed()
                return
            pdu_type, length = pdu_header(header)
        except (OSError, WireError) as exc:
            self._closed("connection closed before a PDU header was received", exc)
            return
        if pdu_type not in PDU_TYPES:
            log.error("unknown PDU type received: 0x%02X", pdu_type)
            self.event_queue.put("Evt19")
            return
        try:
            body = sock.recv(length)
        except OSError as exc:
            self._closed("connection closed before the entire PDU was received", exc)
            return
        if len(body) != length:
            self._closed(f"PDU shorter than announced ({len(body)} of {length} bytes)", None)
            return
        self._on_pdu(pdu_type, header, body)

    def _on_pdu(self, pdu_type: int, header: bytes, body: bytearray) -> None:
        """Decode a received PDU as pynetdicom does and feed its state machine.

        A PDU that decodes but cannot become a primitive (an A-ASSOCIATE-RQ with an
        even presentation context ID, an A-ABORT with an undefined source) is invalid
        (Evt19) here; pynetdicom would find out inside the state machine's action
        (AE-6, AA-3) and the reactor thread would die.
        """
        try:
            pdu, event = self._decode_pdu(bytearray(header) + body)
            if pdu_type != P_DATA_TF:
                pdu.to_primitive()
        except Exception as exc:
            log.error("unable to decode the received PDU (type 0x%02X): %s", pdu_type, exc)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _peer_closed(self) -> None:
        """Evt17 for a peer that closed the connection between PDUs: expected after a
        release or an abort, and from probes that connect and leave (health checks,
        port scans), so logged at DEBUG; a peer that leaves mid-association, WARNING."""
        state = self.state_machine.current_state
        if state in ARTIM_STATES:
            log.debug("the peer closed the connection (%s)", state)
        else:
            log.warning("the peer closed the connection during an association (%s)", state)
        self.event_queue.put("Evt17")

    def _closed(self, message: str, exc: BaseException | None) -> None:
        """Evt17 (transport closed), logged with the reason."""
        reason = "" if exc is None else f" ({str(exc) or type(exc).__name__})"
        log.error("%s%s", message, reason)
        self.event_queue.put("Evt17")

    def _bound_reads(self, state: str) -> None:
        """Give the socket's reads (and writes) the timeout that applies in ``state``."""
        sock = self.socket
        raw = sock.socket if sock is not None else None
        if raw is None:
            return
        timeout = self.assoc.acse_timeout if state in ARTIM_STATES else self.network_timeout
        if timeout != self._read_timeout:
            with contextlib.suppress(OSError):
                raw.settimeout(timeout)
            self._read_timeout = timeout

    def connection_gone(self) -> bool:
        """True once the reactor stopped, or closed the connection it had opened."""
        if self._reactor_done:
            return True
        machine = self.state_machine
        return machine.left_idle and machine.current_state == "Sta1"

    def receive_pdu(self, wait: bool = False, timeout: float | None = None) -> Any:
        """pynetdicom's ``receive_pdu``, but a wait ends when the connection is gone.

        The association thread waits here for the A-ASSOCIATE-RQ (up to the ACSE
        timeout) and for release replies; once the reactor has closed the connection
        nothing more can arrive.
        """
        if not wait:
            return super().receive_pdu(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = RECEIVE_POLL_S
            if deadline is not None:
                step = max(0.0, min(step, deadline - time.monotonic()))
            primitive = super().receive_pdu(wait=True, timeout=step)
            if primitive is not None:
                return primitive
            if self.connection_gone():
                # Anything the reactor queued before it closed is still delivered.
                return super().receive_pdu(wait=False)
            if deadline is not None and time.monotonic() >= deadline:
                return None


__all__ = [
    "ARTIM_STATES",
    "LOCAL_EVENTS",
    "PDU_EVENTS",
    "PDU_TYPES",
    "ArtimTimer",
    "GuardedDUL",
    "GuardedStateMachine",
    "primitive_event",
]
