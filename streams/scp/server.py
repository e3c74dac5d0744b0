"""The pynetdicom Application Entity that serves C-ECHO and C-STORE (PS3.4 Annex A, B).

Contexts and transfer-syntax choice: :mod:`streams.scp.negotiation`; admission:
:mod:`streams.scp.gate`; the handlers: :mod:`streams.scp.handlers`; the fast C-STORE
receive path every accepted association gets: :mod:`streams.scp.fastpath`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import ssl
import threading
import time
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import make_target

from streams.scp.compat import require_tested_pynetdicom
from streams.scp.dul import GuardedDUL
from streams.scp.fastpath import FastStoreDUL, StoreCallback
from streams.scp.gate import AssociationGate
from streams.scp.handlers import StoreHandler
from streams.scp.negotiation import (
    ABSTRACT_SYNTAXES,
    STORAGE_CLASSES,
    TRANSFER_SYNTAXES,
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
    """pynetdicom's request handler, plus the SCP's DUL on every new association and,
    on a TLS listener, the TLS handshake first (in this connection's own thread)."""

    def handle(self) -> None:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket) and not _handshake(
            sock, self.client_address, getattr(self.server, "handshake_timeout_s", None)
        ):
            return
        super().handle()

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        install_dul(assoc, getattr(self.server, "fast_store", None))
        return assoc


def _handshake(sock: ssl.SSLSocket, address: Any, timeout_s: float | None) -> bool:
    """The server side of the TLS handshake, bounded by ``timeout_s``; on failure the
    connection is closed and the reason logged (a plain DICOM peer on the TLS port, a
    client without a certificate or with one from another CA)."""
    try:
        sock.settimeout(timeout_s)
        sock.do_handshake()
        sock.settimeout(None)  # the DUL sets its own read timeouts from here on
    except (OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else exc
        log.warning("DICOM TLS handshake with %s:%s failed: %s", address[0], address[1], reason)
        with contextlib.suppress(OSError):
            sock.close()
        return False
    return True


class _AssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a ``fast_store`` callback for new associations.

    With a TLS context, the accepted socket is wrapped without its handshake:
    pynetdicom's ``get_request`` does the handshake on the accept thread with no
    timeout, so one silent connection would stop the listener accepting anyone; here
    it runs in the connection's thread, bounded by the ACSE timeout (PS3.8 §9.1.5).
    """

    fast_store: StoreCallback | None = None
    handshake_timeout_s: float | None = 30.0

    def get_request(self) -> tuple[Any, Any]:
        assert self.socket is not None  # bound by the constructor
        sock, address = self.socket.accept()
        if self.ssl_context:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address


class DicomServer:
    """A listening SCP: :meth:`start` binds (port 0 picks a free one), :meth:`stop` ends.

    Runs pynetdicom's threaded server (one thread per association); with ``fast_path``
    (the default) C-STOREs take :mod:`streams.scp.fastpath`, otherwise pynetdicom's own
    path to :meth:`StoreHandler.on_store`. ``port`` is the plain listener (``None``:
    none); with ``tls`` (a server :class:`ssl.SSLContext`) a second listener on
    ``tls_port`` speaks DICOM over TLS (PS3.15 Annex B.1). Both share one AE, so
    ``max_associations`` counts associations of both.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int | None,
        gate: AssociationGate,
        handler: StoreHandler,
        max_associations: int = 25,
        max_pdu: int = 0,
        network_timeout_s: float | None = 60.0,
        acse_timeout_s: float | None = 30.0,
        fast_path: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 2762,
    ) -> None:
        self.host = host
        self.fast_path = fast_path
        self.requested_port = port
        self.tls = tls
        self.requested_tls_port = tls_port
        self._acse_timeout_s = acse_timeout_s
        self._gate = gate
        self._handler = handler
        self._ae = build_ae(
            max_associations=max_associations,
            max_pdu=max_pdu,
            network_timeout_s=network_timeout_s,
            acse_timeout_s=acse_timeout_s,
        )
        self._contexts = supported_contexts()
        self._servers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound plain TCP port (valid after :meth:`start`)."""
        return self._bound("plain")

    @property
    def tls_port(self) -> int:
        """The bound DICOM TLS port (valid after :meth:`start`, with ``tls``)."""
        return self._bound("tls")

    def _bound(self, listener: str) -> int:
        server = self._servers.get(listener)
        if server is None:
            raise RuntimeError(f"the DICOM server is not started (no {listener} listener)")
        return int(server.server_address[1])

    def associations(self) -> list[Any]:
        """The pynetdicom associations open right now (for health checks and tests)."""
        return list(self._ae.active_associations)

    def knocking(self) -> bool:
        """Whether a connection waits in a listener's accept queue: a sender knocked and
        is not accepted yet (the process was frozen, or is far behind)."""
        sockets = [s.socket for s in self._servers.values() if s.socket is not None]
        if not sockets:
            return False
        try:
            readable, _, _ = select.select(sockets, [], [], 0)
        except (OSError, ValueError):  # a listener closing under us: nobody waits there
            return False
        return bool(readable)

    def start(self) -> int:
        """Bind and serve in background threads; returns the bound port (the plain one
        when there is one).

        Raises :class:`~streams.scp.compat.UntestedPynetdicomError` first if the installed
        pynetdicom is not one the receive path is tested with.
        """
        require_tested_pynetdicom()
        handlers = [
            (evt.EVT_CONN_OPEN, self._gate.on_conn_open),
            (evt.EVT_REQUESTED, self._gate.on_requested),
            (evt.EVT_C_ECHO, self._handler.on_echo),
            (evt.EVT_C_STORE, self._handler.on_store),
        ]
        listeners: list[tuple[str, int, ssl.SSLContext | None]] = []
        if self.requested_port is not None:
            listeners.append(("plain", self.requested_port, None))
        if self.tls is not None:
            listeners.append(("tls", self.requested_tls_port, self.tls))
        with self._lock:
            try:
                for name, port, context in listeners:
                    self._servers[name] = self._listen(handlers, port, context)
            except BaseException:
                self._shutdown_servers()
                raise
        for name, server in self._servers.items():
            log.info(
                "DICOM SCP listening on %s:%d%s (%d abstract syntaxes, %d transfer syntaxes)",
                self.host,
                int(server.server_address[1]),
                " with TLS" if name == "tls" else "",
                len(ABSTRACT_SYNTAXES),
                len(TRANSFER_SYNTAXES),
            )
        return self.port if "plain" in self._servers else self.tls_port

    def _listen(self, handlers: list[Any], port: int, context: ssl.SSLContext | None) -> Any:
        # As AE.start_server(block=False), with our server and request handler.
        server = self._ae.make_server(
            (self.host, port),
            evt_handlers=handlers,
            contexts=self._contexts,
            ssl_context=context,
            server_class=_AssociationServer,
            request_handler=_RequestHandler,
        )
        server.handshake_timeout_s = self._acse_timeout_s
        if self.fast_path:
            server.fast_store = self._handler.store
        thread = threading.Thread(
            target=make_target(server.serve_forever), name="AcceptorServer", daemon=True
        )
        thread.start()
        self._ae._servers.append(server)
        return server

    def _shutdown_servers(self) -> list[Any]:
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.shutdown()
        return servers

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting; let open associations finish for ``grace_s``, then abort them.

        Blocking: call it from a worker thread when the asyncio loop must keep running
        (C-STORE handlers wait on it to make their events durable).
        """
        with self._lock:
            servers = self._shutdown_servers()
        if not servers:
            return
        deadline = time.monotonic() + grace_s
        # Readiness poll of pynetdicom's own state; there is no event to wait on.
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self._ae.active_associations:
            log.warning("aborting association still open at shutdown")
            assoc.abort()
        log.info("DICOM SCP stopped")
