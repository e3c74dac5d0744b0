"""What a configuration leaves open, and what the adapter refuses to start with.

The rule: nothing that carries patient data or credentials leaves this machine
unprotected. So, unless ``security.insecure`` (the lab opt-out) is set, a role refuses
to start (config problem, exit 2) when

* Kafka is reached over the network without TLS (event values hold Patient IDs; a
  SASL password would travel in clear),
* a bus on the network has no ``kafka.key_secret`` (record keys made with the public
  lab secret give Patient IDs back to anyone who guesses them), or
* the HTTP API has credentials but is served on the network without TLS.

Everything else that is open is listed (``config check``, and one log line at start):
plain DICOM (most modalities cannot do TLS, so it stays allowed), TLS without client
certificates, any calling AE title, Kafka without authentication, the lab key secret on
a loopback bus. With ``security.insecure`` nothing is refused and a WARNING lists it all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from streams.config.models import AdapterConfig

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class Exposure:
    """One thing left open: what, how to close it, and whether it stops a start."""

    message: str
    fix: str
    refused: bool = False

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, brackets allowed) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _broker_hosts(servers: str) -> list[str]:
    return [entry.strip().rpartition(":")[0] for entry in servers.split(",") if entry.strip()]


def exposures(config: AdapterConfig) -> list[Exposure]:
    """Everything ``config`` leaves open (see the module docstring); ``refused`` marks
    what stops a start unless ``security.insecure``. An unset Kafka address is the
    embedded broker, on loopback."""
    found: list[Exposure] = []
    scp = config.scp
    if scp.port is not None:
        found.append(
            Exposure(
                f"DICOM without TLS on {scp.host}:{scp.port}",
                "add scp.tls (PS3.15 Annex B) and set scp.port: null once every sender uses it",
            )
        )
    if scp.tls is not None and scp.tls.verify_clients != "required":
        found.append(
            Exposure(
                f"DICOM TLS on port {scp.tls.port} accepts senders without a client certificate",
                "set scp.tls.ca to the CA of the senders' certificates",
            )
        )
    if not scp.reject_unknown_sources:
        found.append(
            Exposure(
                "any calling AE title may store",
                "list the senders in scp.sources and set scp.reject_unknown_sources: true",
            )
        )
    found += _kafka(config)
    found += _http(config)
    if config.security.insecure:
        found.append(Exposure("security.insecure is true (lab mode)", "remove it outside a lab"))
    return found


def _kafka(config: AdapterConfig) -> list[Exposure]:
    kafka = config.kafka
    servers = kafka.bootstrap_servers
    where = servers or "the embedded broker"
    remote = servers is not None and not all(is_loopback(h) for h in _broker_hosts(servers))
    found: list[Exposure] = []
    security = kafka.security
    if not security.tls:
        found.append(
            Exposure(
                f"Kafka traffic to {where} is not encrypted (event values hold Patient IDs)",
                "set kafka.security.protocol: SASL_SSL (or SSL) and kafka.security.ca",
                refused=remote,
            )
        )
    if not security.authenticated:
        found.append(
            Exposure(
                f"the adapter does not authenticate to Kafka at {where}",
                "set kafka.security.protocol: SASL_SSL with a username and password",
            )
        )
    if kafka.key_secret is None:
        found.append(
            Exposure(
                "record keys use the public lab key secret (a guessed Patient ID can be "
                "checked against them)",
                "set kafka.key_secret (or key_secret_file), the same on every adapter of the bus",
                refused=remote,
            )
        )
    return found


def _http(config: AdapterConfig) -> list[Exposure]:
    http = config.http
    if http.port == 0:
        return []
    found: list[Exposure] = []
    credentials = bool(http.auth.tokens) or (
        http.tls is not None and http.tls.verify_clients != "none"
    )
    if not credentials and config.security.insecure:
        found.append(
            Exposure(
                f"the HTTP API on {http.host}:{http.port} is open to anyone (no credentials, "
                "security.insecure)",
                "set http.auth.tokens",
            )
        )
    if http.tls is None and not is_loopback(http.host):
        found.append(
            Exposure(
                f"HTTP on {http.host}:{http.port} is not encrypted",
                "set http.tls (or http.host: 127.0.0.1)",
                refused=credentials,
            )
        )
    return found


def refusals(config: AdapterConfig) -> list[str]:
    """The problem lines that stop a start (empty with ``security.insecure``)."""
    if config.security.insecure:
        return []
    return [
        f"security: {e.message}; {e.fix} (or, in a lab only, set security.insecure: true)"
        for e in exposures(config)
        if e.refused
    ]
