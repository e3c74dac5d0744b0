"""The pynetdicom Application Entity that serves C-ECHO and C-STORE (PS3.4 Annex A, B).

Contexts and transfer-syntax choice: :mod:`streams.scp.negotiation`; admission:
:mod:`streams.scp.gate`; the handlers: :mod:`streams.scp.handlers`; the fast C-STORE
receive path every accepted association gets: :mod:`streams.scp.fastpath`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import make_target

from streams.scp.dul import GuardedDUL
from streams.scp.fastpath import FastStoreDUL, StoreCallback
from streams.scp.gate import AssociationGate
from streams.scp.handlers import StoreHandler
from streams.scp.negotiation import (
    ABSTRACT_SYNTAXES,
    TRANSFER_SYNTAXES,
    VERIFICATION,
    supported_contexts,
)
from streams.scp.tcp import close_even_when_reset

log = logging.getLogger(__name__)

LOCAL_AE_TITLE = "DICOM-ADAPTER"


def build_ae(
    *,
    max_associations: int,
    max_pdu: int,
    network_timeout_s: float | None,
    acse_timeout_s: float | None = 30.0,
) -> Any:
    """A pynetdicom AE (contexts come from :func:`supported_contexts` at start).

    AE titles are checked by the gate, not by pynetdicom. ``acse_timeout_s`` is also
    the ARTIM timeout of accepted connections (PS3.8 §9.1.5).
    """
    ae = AE(ae_title=LOCAL_AE_TITLE)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu
    ae.require_called_aet = False
    ae.network_timeout = network_timeout_s
    ae.acse_timeout = acse_timeout_s
    return ae


STORAGE_CLASSES: frozenset[str] = frozenset(ABSTRACT_SYNTAXES) - {VERIFICATION}


def install_dul(assoc: Any, store: StoreCallback | None) -> None:
    """Give a just-created acceptor association the SCP's DUL.

    A :class:`FastStoreDUL` when there is a ``store`` callback (the fast C-STORE path),
    else a :class:`GuardedDUL` (pynetdicom's own paths, still hardened against races).
    Called before the association starts: the new DUL takes over the socket and the
    queues (the socket already queued Evt5, "transport connection indication"), and the
    timeouts pynetdicom set on the old DUL's timers are applied again.
    """
    old = assoc.dul
    dul = GuardedDUL(assoc) if store is None else FastStoreDUL(assoc, store, STORAGE_CLASSES)
    dul.socket = old.socket
    close_even_when_reset(dul.socket)
    for queue in ("event_queue", "to_provider_queue", "to_user_queue", "_recv_pdu"):
        setattr(dul, queue, getattr(old, queue))
    assoc.dul = dul
    assoc.acse_timeout = assoc.acse_timeout
    assoc.network_timeout = assoc.network_timeout


class _RequestHandler(RequestHandler):
    """pynetdicom's request handler, plus the SCP's DUL on every new association."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        install_dul(assoc, getattr(self.server, "fast_store", None))
        return assoc


class _AssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a ``fast_store`` callback for new associations."""

    fast_store: StoreCallback | None = None


class DicomServer:
    """A listening SCP: :meth:`start` binds (port 0 picks a free one), :meth:`stop` ends.

    Runs pynetdicom's threaded server (one thread per association); with ``fast_path``
    (the default) C-STOREs take :mod:`streams.scp.fastpath`, otherwise pynetdicom's own
    path to :meth:`StoreHandler.on_store`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        gate: AssociationGate,
        handler: StoreHandler,
        max_associations: int = 25,
        max_pdu: int = 0,
        network_timeout_s: float | None = 60.0,
        acse_timeout_s: float | None = 30.0,
        fast_path: bool = True,
    ) -> None:
        self.host = host
        self.fast_path = fast_path
        self.requested_port = port
        self._gate = gate
        self._handler = handler
        self._ae = build_ae(
            max_associations=max_associations,
            max_pdu=max_pdu,
            network_timeout_s=network_timeout_s,
            acse_timeout_s=acse_timeout_s,
        )
        self._contexts = supported_contexts()
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound TCP port (valid after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the DICOM server is not started")
        return int(self._server.server_address[1])

    def associations(self) -> list[Any]:
        """The pynetdicom associations open right now (for health checks and tests)."""
        return list(self._ae.active_associations)

    def start(self) -> int:
        """Bind and serve in background threads; returns the bound port."""
        handlers = [
            (evt.EVT_CONN_OPEN, self._gate.on_conn_open),
            (evt.EVT_REQUESTED, self._gate.on_requested),
            (evt.EVT_C_ECHO, self._handler.on_echo),
            (evt.EVT_C_STORE, self._handler.on_store),
        ]
        with self._lock:
            # As AE.start_server(block=False), with our server and request handler.
            server = self._ae.make_server(
                (self.host, self.requested_port),
                evt_handlers=handlers,
                contexts=self._contexts,
                server_class=_AssociationServer,
                request_handler=_RequestHandler,
            )
            if self.fast_path:
                server.fast_store = self._handler.store
            thread = threading.Thread(
                target=make_target(server.serve_forever), name="AcceptorServer", daemon=True
            )
            thread.start()
            self._ae._servers.append(server)
            self._server = server
        log.info(
            "DICOM SCP listening on %s:%d (%d abstract syntaxes, %d transfer syntaxes)",
            self.host,
            self.port,
            len(ABSTRACT_SYNTAXES),
            len(TRANSFER_SYNTAXES),
        )
        return self.port

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting; let open associations finish for ``grace_s``, then abort them.

        Blocking: call it from a worker thread when the asyncio loop must keep running
        (C-STORE handlers wait on it to make their events durable).
        """
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        deadline = time.monotonic() + grace_s
        # Readiness poll of pynetdicom's own state; there is no event to wait on.
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self._ae.active_associations:
            log.warning("aborting association still open at shutdown")
            assoc.abort()
        log.info("DICOM SCP stopped")
