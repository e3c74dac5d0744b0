"""A local certificate authority for the secure embedded broker and for tests.

Made with ``cryptography`` (no keytool, no openssl process): Kafka reads PEM key stores
(``ssl.keystore.type=PEM``), pynetdicom, uvicorn and aiokafka take PEM files through
:mod:`ssl`. Keys are EC P-256, unencrypted, written with mode 0600; certificates are
valid for a year. For a lab or a test, never for production: there, use the
hospital's PKI.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key on disk; ``pem`` holds the key then the certificate
    (the single file Kafka's PEM key store wants)."""

    cert: Path
    key: Path
    pem: Path


class LocalCa:
    """A self-signed CA in ``folder`` (``<name>-ca.pem``, ``<name>-ca.key``) that issues
    server and client certificates next to it."""

    def __init__(self, folder: Path, name: str = "dicom-adapter-local") -> None:
        self.folder = folder
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        self.cert_path = folder / f"{name}-ca.pem"
        key_path = folder / f"{name}-ca.key"
        if self.cert_path.is_file() and key_path.is_file():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write(key_path, _key_pem(key), private=True)
        _write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        self._key, self._cert = key, cert

    def issue(
        self,
        common_name: str,
        *,
        hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        file_stem: str | None = None,
    ) -> Issued:
        """A certificate for ``common_name``, usable as a TLS server (for ``hosts``) and as
        a TLS client; files ``<stem>.pem`` (certificate), ``<stem>.key`` and
        ``<stem>-keystore.pem`` (key and certificate) in the CA's folder."""
        stem = file_stem or common_name
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        issued = Issued(
            cert=self.folder / f"{stem}.pem",
            key=self.folder / f"{stem}.key",
            pem=self.folder / f"{stem}-keystore.pem",
        )
        _write(issued.cert, cert_pem)
        _write(issued.key, _key_pem(key), private=True)
        _write(issued.pem, _key_pem(key) + cert_pem, private=True)
        return issued


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
