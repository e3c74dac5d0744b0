"""Which sender a destination means (``export.destinations[].kind``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from processors.submit.backoff import RetryPolicy
from streams.config import AdapterConfig, DicomDestination, DicomWebDestination
from streams.scu import (
    CStoreSender,
    DicomPeer,
    ItemLike,
    Progress,
    ScuTimeouts,
    SendOutcome,
    StowAuth,
    StowSender,
)
from streams.tls import client_context


class Sender(Protocol):
    """Sends a batch, one outcome per item, never raising for a peer's answer."""

    async def send(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        """Send ``items``; outcomes in the same order."""
        ...


def make_sender(destination: DicomDestination | DicomWebDestination, *, calling_ae: str) -> Sender:
    """The sender of one configured destination."""
    if isinstance(destination, DicomDestination):
        where = f"export.destinations[{destination.name}].tls"
        tls = client_context(destination.tls, where) if destination.tls is not None else None
        peer = DicomPeer(destination.ae_title, destination.host, destination.port, calling_ae, tls)
        return CStoreSender(peer, timeouts=ScuTimeouts.uniform(destination.timeout_s))
    auth = destination.auth
    secret = auth.password.get_secret_value() if auth.password else ""
    token = auth.token.get_secret_value() if auth.token else ""
    return StowSender(
        destination.url,
        auth=StowAuth(auth.kind, auth.username or "", password=secret, token=token),
        timeout_s=destination.timeout_s,
    )


def make_senders(config: AdapterConfig) -> dict[str, Sender]:
    """Every configured destination's sender, by name."""
    out: dict[str, Sender] = {}
    for destination in config.export.destinations:
        calling = (
            config.calling_ae(destination) if isinstance(destination, DicomDestination) else ""
        )
        out[destination.name] = make_sender(destination, calling_ae=calling)
    return out


def retry_policy(config: AdapterConfig) -> RetryPolicy:
    """The retry policy of ``export.*``."""
    export = config.export
    return RetryPolicy(export.max_attempts, export.backoff_initial_s, export.backoff_max_s)
