"""Who may call the HTTP API: one ASGI middleware in front of every route.

Every path but the probes and metrics (:data:`OPEN_PATHS`) needs either a bearer token
from ``http.auth.tokens`` (``Authorization: Bearer <token>``) or a client certificate
verified by ``http.tls.ca`` (mutual TLS). The middleware wraps the whole app, so routes,
routers and mounts that roles add later (the cache API, exports, STOW-RS, a UI) are
protected without doing anything, and so are unknown paths (a 401 before a 404 says
nothing about what exists). With no credentials configured every protected request is
refused, unless the lab opt-out ``security.insecure`` is set.

Tokens are compared in constant time (their SHA-256 digests, every token each time)
and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.config import AdapterConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths anyone may call: they carry no patient data and change nothing. ``/ui`` is
#: the static operator page; the data it shows comes from protected routes.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/ui"})

NO_CREDENTIALS = (
    "no API credentials are configured on this adapter; set http.auth.tokens (or "
    "http.tls.ca for client certificates), see docs/security.md"
)
MISSING = "this endpoint needs 'Authorization: Bearer <token>' or a client certificate"
WRONG = "the bearer token is not valid"


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """What the middleware accepts: token digests, verified client certificates, or
    (``open``) anyone."""

    digests: tuple[bytes, ...] = field(default=(), repr=False)
    client_certificates: bool = False
    open: bool = False

    @classmethod
    def of(cls, config: AdapterConfig) -> ApiAuth:
        """The API's policy for ``config`` (see the module docstring)."""
        http = config.http
        tokens = tuple(_digest(t.get_secret_value()) for t in http.auth.tokens)
        certs = http.tls is not None and http.tls.verify_clients != "none"
        return cls(tokens, certs, open=config.security.insecure and not tokens and not certs)

    @property
    def configured(self) -> bool:
        """Whether any credential can pass."""
        return bool(self.digests) or self.client_certificates

    def refusal(self, scope: Scope) -> str | None:
        """Why the request of ``scope`` is refused, or ``None`` when it may go on."""
        if self.open or scope.get("path") in OPEN_PATHS:
            return None
        if self.client_certificates and _client_cert(scope):
            return None
        if not self.configured:
            return NO_CREDENTIALS
        token = _bearer(scope)
        if token is None:
            return MISSING
        offered = _digest(token)
        matched = False
        for digest in self.digests:  # no early exit: the time says nothing about which
            matched |= hmac.compare_digest(offered, digest)
        return None if matched else WRONG


class AuthMiddleware:
    """ASGI middleware answering 401 (``WWW-Authenticate: Bearer``) for refused requests."""

    def __init__(self, app: Asgi, auth: ApiAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = self.auth.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": reason})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="dicom-adapter"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def with_client_certificate(app: Asgi, subject: str) -> Asgi:
    """``app`` with the ASGI TLS extension (``scope["extensions"]["tls"]``) naming the
    verified client certificate of this connection."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = {**scope.get("extensions", {}), "tls": {"client_cert_name": subject}}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return wrapped


def _client_cert(scope: Scope) -> bool:
    tls = scope.get("extensions", {}).get("tls") or {}
    return bool(tls.get("client_cert_name"))


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = str(value.decode("latin-1")).partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
