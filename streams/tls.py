"""TLS contexts from the config, and who is on the other end of a TLS connection.

One place builds every :class:`ssl.SSLContext` of the adapter (DICOM SCP and SCU,
HTTP, Kafka), so the same rules hold everywhere: TLS 1.2 at least (the BCP 195
profile of PS3.15 Annex B.9; Python's default cipher list), peers verified against
the configured CA bundle (else the system's), host names checked unless a
destination turns that off. A file that cannot be loaded is a config problem naming
its key (exit 2), not a traceback.
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509

from streams.config.security import TlsClient, TlsServer
from streams.errors import ConfigError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_context(tls: TlsServer, where: str) -> ssl.SSLContext:
    """The server side of ``tls`` (``where`` names its config key in errors)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    _load_chain(context, tls.cert, tls.key, where)
    if tls.ca is not None:
        _load_ca(context, tls.ca, where)
    context.verify_mode = _VERIFY[tls.verify_clients]
    return context


def client_context(tls: TlsClient, where: str) -> ssl.SSLContext:
    """The client side of ``tls``: verifies the server (host name included unless
    ``check_hostname`` is false) and presents our certificate when one is set."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca is not None:
        _load_ca(context, tls.ca, where)
    context.check_hostname = tls.check_hostname
    if tls.cert is not None and tls.key is not None:
        _load_chain(context, tls.cert, tls.key, where)
    return context


def peer_subject(sock: Any) -> str:
    """The RFC 4514 subject of the certificate the peer of ``sock`` (an
    :class:`ssl.SSLSocket` or :class:`ssl.SSLObject`) presented and we verified; ``""``
    for a plain connection or a peer without a certificate."""
    if not isinstance(sock, ssl.SSLSocket | ssl.SSLObject):
        return ""
    try:
        der = sock.getpeercert(binary_form=True)
    except (ValueError, OSError):  # not connected any more
        return ""
    if not der:
        return ""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _load_chain(context: ssl.SSLContext, cert: Any, key: Any, where: str) -> None:
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            [
                f"{where}.cert/{where}.key: {cert} and {key} cannot be used as a certificate "
                f"and its private key ({_reason(exc)}); give a PEM certificate chain and the "
                "unencrypted PEM key that belongs to it"
            ]
        ) from None


def _load_ca(context: ssl.SSLContext, ca: Any, where: str) -> None:
    try:
        context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            [f"{where}.ca: {ca} is not a PEM CA bundle ({_reason(exc)}); give PEM certificates"]
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
