"""Certificates for TLS tests: two local CAs, a server and clients of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streams.broker.certs import Issued, LocalCa


@dataclass(frozen=True)
class Pki:
    """``ca`` issued ``server`` and ``client``; ``other_ca`` issued ``stranger``."""

    ca: Path
    server: Issued
    client: Issued
    other_ca: Path
    stranger: Issued


def make_pki(folder: Path) -> Pki:
    """Generate the test PKI in ``folder`` (cryptography, no external tools)."""
    ca = LocalCa(folder, "test")
    other = LocalCa(folder / "other", "other")
    return Pki(
        ca=ca.cert_path,
        server=ca.issue("dicom-adapter", file_stem="server"),
        client=ca.issue("modality-1", file_stem="client"),
        other_ca=other.cert_path,
        stranger=other.issue("modality-x", file_stem="stranger"),
    )
