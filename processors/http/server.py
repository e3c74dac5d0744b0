"""Run the ASGI app inside the process's running event loop (one HTTP port per process).

uvicorn's ``Server.serve`` replaces the SIGINT/SIGTERM handlers of the main thread;
our CLI owns those (``loop.add_signal_handler`` sets the role's stop event), so the
server here never touches signals: :class:`_QuietServer` turns signal capture off and
:class:`HttpServer` stops it when its ``async with`` block ends. uvicorn does not
configure logging either (``log_config=None``): the CLI does that once.

``port=0`` binds a free port (tests); :attr:`HttpServer.port` is the bound one. In the
config, ``http.port: 0`` means "no HTTP server" — see :func:`open_http_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from processors.http.app import create_app
from processors.http.auth import with_client_certificate
from processors.http.readiness import Readiness
from streams.config import HttpConfig
from streams.errors import AdapterError
from streams.lifecycle import Service
from streams.tls import peer_subject, server_context

log = logging.getLogger(__name__)

# Seconds an open keep-alive connection may delay shutdown.
_GRACEFUL_S = 2


class HttpServerError(AdapterError):
    """The HTTP endpoint could not listen (address in use, bad host)."""


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signal handlers alone and says when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()


class _TlsH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol that tells the app about a verified client
    certificate (the ASGI TLS extension, which uvicorn does not fill in itself)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        subject = peer_subject(transport.get_extra_info("ssl_object"))
        if subject:
            self.app = with_client_certificate(self.app, subject)


class _Config(uvicorn.Config):
    """uvicorn's config with our own TLS context (every uvicorn release reads ``ssl``)."""

    def __init__(self, app: FastAPI, tls: ssl.SSLContext | None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._tls = tls

    def load(self) -> None:
        super().load()
        if self._tls is not None:
            self.ssl = self._tls


class HttpServer(Service):
    """``async with HttpServer(app, host, port) as server:`` serves ``app`` until the block
    ends; ``server.port`` is the bound port (useful with ``port=0``); with ``tls`` (a
    server :class:`ssl.SSLContext`) it speaks HTTPS."""

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.tls = tls
        self.requested_port = port
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (still readable after the server stopped)."""
        if self._port is None:
            raise RuntimeError("the HTTP server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` to reach the server (a wildcard host becomes loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        scheme = "https" if self.tls is not None else "http"
        return (
            f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"
        )

    async def start(self) -> None:
        self._sock = _bind(self.host, self.requested_port)
        self._port = int(self._sock.getsockname()[1])
        config = _Config(
            self.app,
            self.tls,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=_TlsH11Protocol,
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=_GRACEFUL_S,
        )
        self._server = server = _QuietServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]), name="http-server")
        self._task.add_done_callback(self._ended)
        listening = asyncio.create_task(server.listening.wait())
        try:
            await asyncio.wait({self._task, listening}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled while starting: leave nothing running
            listening.cancel()
            await self._close()
            raise
        if not server.listening.is_set():
            listening.cancel()
            failure = self._task.exception() if not self._task.cancelled() else None
            self._task = None
            await self._close()
            raise HttpServerError(
                f"http: the server on {self.host}:{self.requested_port} stopped while "
                f"starting ({failure or 'no error given'})"
            )
        log.info("http: /healthz /readyz /metrics on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        await self._close()

    def _ended(self, task: asyncio.Task[None]) -> None:
        # Stopping on purpose sets should_exit first; anything else is worth an error line
        # (the probes stop answering, so an orchestrator restarts the process).
        server = self._server
        if server is not None and not server.should_exit and not task.cancelled():
            log.error("http: the server stopped unexpectedly: %s", task.exception())

    async def _close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.warning("http: the server failed while stopping", exc_info=True)
        if self._sock is not None:
            self._sock.close()
        self._server = self._task = self._sock = None


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by ``host``), or a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise HttpServerError(
            f"http: cannot listen on {host}:{port} ({reason}); set http.port to a free port "
            "(DICOM_ADAPTER_HTTP__PORT) or http.port: 0 to disable the endpoint"
        ) from None


@contextlib.asynccontextmanager
async def open_http_server(
    http: HttpConfig, readiness: Readiness, *, app: FastAPI | None = None
) -> AsyncIterator[HttpServer | None]:
    """The process's HTTP endpoint as configured: ``None`` when ``http.port`` is 0
    (disabled, as :class:`HttpConfig` documents), else a started :class:`HttpServer`
    serving ``app`` (default: :func:`create_app` for ``readiness``)."""
    if http.port == 0:
        log.info("http: disabled (http.port is 0)")
        yield None
        return
    tls = server_context(http.tls, "http.tls") if http.tls is not None else None
    async with HttpServer(app or create_app(readiness), http.host, http.port, tls) as server:
        yield server
