"""Security settings: TLS files, Kafka credentials, HTTP tokens, the lab opt-out.

Secrets (``password``, ``tokens``, ``key_secret``) are :class:`pydantic.SecretStr`, so
they never show in ``repr`` or in problem lines; each can also come from a file
(``<name>_file``, read once at load, a trailing newline dropped) or from the
environment (``DICOM_ADAPTER_KAFKA__SECURITY__PASSWORD``...). What each setting
protects: docs/security.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, SecretStr, model_validator
from pydantic_core import InitErrorDetails

from streams.config.base import NonEmptyStr, Port, StrictModel, problem, validate_with

#: IANA's port for DICOM over TLS ("dicom-tls", PS3.15 Annex B.1).
DICOM_TLS_PORT = 2762


def check_readable_file(value: Path) -> Path:
    """A file that exists and can be read now (certificates, keys, secrets)."""
    if not value.is_file():
        raise ValueError(f"{str(value)!r} is not a file; check the path")
    try:
        with value.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{str(value)!r} cannot be read ({exc.strerror}); check it") from None
    return value


ReadableFile = Annotated[Path, AfterValidator(check_readable_file)]
ClientCerts = Literal["none", "optional", "required"]


def secret_from_file(value: dict[str, Any], key: str, extra: list[InitErrorDetails]) -> None:
    """Fill ``value[key]`` from the file named by ``value[key + "_file"]`` (in place).

    One of the two at most; an unreadable file is a problem naming the ``_file`` key.
    """
    name = f"{key}_file"
    path = value.get(name)
    if path is None:
        return
    if value.get(key) is not None:
        extra.append(problem((name,), path, f"and {key} are both set; keep one of them"))
        return
    try:
        text = Path(str(path)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        extra.append(problem((name,), path, f"cannot be read ({reason}); check the path"))
        return
    value[key] = text.rstrip("\r\n")


#: Shortest token or key secret accepted: a guessable secret protects nothing.
MIN_SECRET = 16


def check_secret_length(
    secret: Any, loc: tuple[str | int, ...], extra: list[InitErrorDetails], what: str
) -> None:
    """A problem (value masked) when ``secret`` is a string shorter than :data:`MIN_SECRET`."""
    if isinstance(secret, str) and len(secret) < MIN_SECRET:
        extra.append(
            problem(
                loc,
                "***",
                f"is shorter than {MIN_SECRET} characters; use a random {what}, e.g. from "
                "'openssl rand -hex 32'",
            )
        )


class TlsServer(StrictModel):
    """A TLS server side: our certificate and key, and optionally the CA bundle that
    client certificates must chain to (mutual TLS).

    ``client_certs``: ``required`` (no certificate, no connection), ``optional`` (a
    certificate is verified when sent) or ``none``; the default is ``required`` when
    ``ca`` is set, else ``none``. ``min_version`` 1.2 follows the BCP 195 profile
    (PS3.15 Annex B.9).
    """

    cert: ReadableFile
    key: ReadableFile
    ca: ReadableFile | None = None
    client_certs: ClientCerts | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="wrap")
    @classmethod
    def _ca_for_client_certs(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict) and value.get("ca") is None:
            wanted = value.get("client_certs")
            if wanted in ("optional", "required"):
                extra.append(
                    problem(
                        ("client_certs",),
                        wanted,
                        "needs a ca (the CA bundle client certificates must chain to); "
                        "set ca or client_certs: none",
                    )
                )
        return validate_with(handler, value, extra, cls.__name__)

    @property
    def verify_clients(self) -> ClientCerts:
        """The effective client-certificate policy."""
        if self.client_certs is not None:
            return self.client_certs
        return "required" if self.ca is not None else "none"


class ScpTls(TlsServer):
    """The SCP's DICOM TLS listener (PS3.15 Annex B), beside or instead of the plain one."""

    port: Port = DICOM_TLS_PORT


class TlsClient(StrictModel):
    """A TLS client side: the CA bundle that verifies the server (default: the system's),
    and our certificate and key when the server asks for one (mutual TLS)."""

    ca: ReadableFile | None = None
    cert: ReadableFile | None = None
    key: ReadableFile | None = None
    check_hostname: bool = True

    @model_validator(mode="wrap")
    @classmethod
    def _cert_with_key(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict) and (value.get("cert") is None) != (value.get("key") is None):
            missing = "key" if value.get("key") is None else "cert"
            extra.append(
                problem((missing,), None, "is required with the other of cert and key; set both")
            )
        return validate_with(handler, value, extra, cls.__name__)


KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class KafkaSecurity(TlsClient):
    """How every Kafka client of the adapter authenticates and encrypts (aiokafka's
    ``security_protocol``, ``ssl_context`` and SASL settings)."""

    protocol: Annotated[KafkaProtocol, BeforeValidator(_upper)] = "PLAINTEXT"
    sasl_mechanism: Annotated[SaslMechanism, BeforeValidator(_upper)] = "SCRAM-SHA-512"
    username: NonEmptyStr | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            value = dict(value)
            secret_from_file(value, "password", extra)
            protocol = str(value.get("protocol", "PLAINTEXT")).upper()
            if protocol.startswith("SASL_"):
                for key in ("username", "password"):
                    if value.get(key) in (None, ""):
                        extra.append(
                            problem((key,), None, f"is required when protocol is {protocol}")
                        )
            else:
                for key in ("username", "password"):
                    if value.get(key) is not None:
                        extra.append(
                            problem(
                                (key,),
                                "***" if key == "password" else value[key],
                                f"is only used with SASL; set protocol: SASL_SSL or remove {key}",
                            )
                        )
            if not protocol.endswith("SSL"):
                for key in ("ca", "cert", "key"):
                    if value.get(key) is not None:
                        extra.append(
                            problem(
                                (key,),
                                value[key],
                                "is only used with TLS; set protocol: SSL or SASL_SSL, "
                                f"or remove {key}",
                            )
                        )
        return validate_with(handler, value, extra, cls.__name__)

    @property
    def tls(self) -> bool:
        """Whether connections are encrypted (SSL or SASL_SSL)."""
        return self.protocol.endswith("SSL")

    @property
    def authenticated(self) -> bool:
        """Whether the client proves who it is (SASL, or a client certificate)."""
        return self.protocol.startswith("SASL_") or self.cert is not None


_TOKEN_SPLIT = re.compile(r"[\s,]+")


def _token_list(value: Any) -> Any:
    # One variable can carry several tokens: DICOM_ADAPTER_HTTP__AUTH__TOKENS="a b".
    if isinstance(value, str):
        return [t for t in _TOKEN_SPLIT.split(value) if t]
    return value


class HttpAuth(StrictModel):
    """Bearer tokens that the HTTP API accepts (``Authorization: Bearer <token>``).

    From ``tokens`` (a list, or one string of tokens separated by spaces or commas, e.g.
    from ``DICOM_ADAPTER_HTTP__AUTH__TOKENS``) and ``tokens_file`` (one per line).
    """

    tokens: Annotated[tuple[SecretStr, ...], BeforeValidator(_token_list)] = ()
    tokens_file: Path | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _from_file(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        extra: list[InitErrorDetails] = []
        if isinstance(value, dict):
            value = dict(value)
            tokens = list(_token_list(value.get("tokens") or []))
            if value.get("tokens_file") is not None:
                read = {"tokens_file": value["tokens_file"]}
                secret_from_file(read, "tokens", extra)
                lines = (t.strip() for t in str(read.get("tokens") or "").splitlines())
                tokens += [t for t in lines if t and not t.startswith("#")]
            value["tokens"] = tokens
            for index, token in enumerate(tokens):
                check_secret_length(token, ("tokens", index), extra, "token")
        return validate_with(handler, value, extra, cls.__name__)


class SecurityConfig(StrictModel):
    """``insecure: true`` is the lab opt-out: the adapter starts even where it would
    refuse to (see docs/security.md) and logs a WARNING listing everything open."""

    insecure: bool = False
