"""Who may open an association (pure): called AE titles and known sources.

Checks run in Clara DICOM Adapter's order (reference §4): first the calling AE and
its host when unknown sources are rejected, then the called AE title. A refusal is
an A-ASSOCIATE-RJ with result *rejected-permanent*, source *service-user* and the
reason code of PS3.8 §9.3.4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple


class Rejection(NamedTuple):
    """The (result, source, diagnostic) of an A-ASSOCIATE-RJ and a readable reason."""

    result: int
    source: int
    diagnostic: int
    reason: str


CALLING_AE_NOT_RECOGNIZED = Rejection(0x01, 0x01, 0x03, "calling AE title not recognized")
CALLED_AE_NOT_RECOGNIZED = Rejection(0x01, 0x01, 0x07, "called AE title not recognized")


def normalize_host(host: str) -> str:
    """Canonical text of an address (``::ffff:10.0.0.5`` → ``10.0.0.5``); names lower-cased."""
    text = host.strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@dataclass(frozen=True, slots=True)
class AssociationPolicy:
    """Called AE titles served, and the known sources (calling AE → allowed hosts).

    A source whose hosts are ``None`` may connect from any host. AE titles are
    compared exactly (case-sensitive) after stripping spaces, as pynetdicom does.
    """

    called_ae_titles: frozenset[str]
    reject_unknown_sources: bool = False
    sources: Mapping[str, frozenset[str] | None] | None = None

    @classmethod
    def build(
        cls,
        called_ae_titles: Iterable[str],
        *,
        reject_unknown_sources: bool = False,
        sources: Iterable[tuple[str, Iterable[str] | None]] = (),
    ) -> AssociationPolicy:
        """Policy from AE titles and ``(calling AE, hosts or None)`` pairs."""
        table: dict[str, frozenset[str] | None] = {}
        for ae, hosts in sources:
            if hosts is None or table.get(ae, frozenset()) is None:
                table[ae] = None
            else:
                known = table.get(ae) or frozenset()
                table[ae] = known | {normalize_host(h) for h in hosts}
        return cls(
            called_ae_titles=frozenset(called_ae_titles),
            reject_unknown_sources=reject_unknown_sources,
            sources=table,
        )

    def check(self, called_ae: str, calling_ae: str, calling_host: str) -> Rejection | None:
        """``None`` to accept, otherwise why the association is rejected."""
        if self.reject_unknown_sources:
            table = self.sources or {}
            calling = calling_ae.strip()
            if calling not in table:
                return CALLING_AE_NOT_RECOGNIZED
            hosts = table[calling]
            if hosts is not None and normalize_host(calling_host) not in hosts:
                return CALLING_AE_NOT_RECOGNIZED
        if called_ae.strip() not in self.called_ae_titles:
            return CALLED_AE_NOT_RECOGNIZED
        return None
