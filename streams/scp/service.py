"""The SCP role as one async context manager: DICOM server, storage, durable delivery.

Usage (inside a running loop)::

    async with ScpService(config) as scp:
        print(scp.port)          # the bound port (config port 0 picks a free one)
        await stop_event.wait()

Start-up opens the outbox (``<storage>/.outbox/<adapter_id>``), connects to Kafka (creating the
topics first) — or, if the broker is unreachable, starts anyway and keeps events in the
outbox until it is back — then listens. Shutdown stops accepting, lets open
associations finish, and closes the publisher; events not yet in Kafka stay in the
outbox and are published on the next start, with the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from streams.config import AdapterConfig
from streams.events import RecordKeys
from streams.kafka import (
    EventPublisher,
    KafkaConnection,
    Publisher,
    ensure_adapter_topics,
    topic_names,
)
from streams.kafka.heartbeat import HeartbeatSender, Owed
from streams.lifecycle import Service
from streams.scp.bridge import LoopBridge
from streams.scp.compat import require_tested_pynetdicom
from streams.scp.delivery import Delivery, PublisherFactory
from streams.scp.gate import AssociationGate
from streams.scp.handlers import AeOptions, StoreHandler, epoch_ms
from streams.scp.outbox import Outbox
from streams.scp.policy import AssociationPolicy
from streams.scp.server import DicomServer
from streams.storage import DiskUsage, SpaceGuard, sanitize_component
from streams.tls import server_context

log = logging.getLogger(__name__)

OUTBOX_DIR = ".outbox"


def outbox_dir(storage: Path, adapter_id: str) -> Path:
    """``<storage>/.outbox/<adapter_id>``: one outbox per SCP, so SCPs with distinct
    adapter ids can share one storage folder (issue 6)."""
    return storage / OUTBOX_DIR / sanitize_component(adapter_id)


def kafka_publisher_factory(
    config: AdapterConfig, prepare: Callable[[], Awaitable[object]] | None = None
) -> PublisherFactory:
    """Open an :class:`EventPublisher` on ``config.kafka`` after ``prepare()`` (default:
    create the adapter's topics if they are missing); called again after an outage."""
    kafka = KafkaConnection.of(config.kafka)

    async def topics() -> object:
        return await ensure_adapter_topics(kafka, config.kafka, timeout_s=10.0)

    ready = prepare or topics

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Publisher]:
        await ready()
        # linger 0: every C-STORE waits for its ack, so a batching delay is pure latency;
        # events of concurrent associations still share requests (aiokafka sends one
        # request per broker at a time and batches what queued up meanwhile).
        async with EventPublisher(
            kafka, client_id=f"{config.adapter_id}-scp", linger_ms=0
        ) as publisher:
            yield publisher

    return connect


def resolve_host(host: str) -> set[str]:
    """Addresses a configured source host stands for (an IP, or a name's addresses)."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        log.warning("source host %s does not resolve (%s); it can never match", host, exc)
        return {host}
    return {str(info[4][0]) for info in infos} | {host}


def policy_from_config(config: AdapterConfig) -> AssociationPolicy:
    """The association policy of ``config.scp`` (resolves source host names: blocking)."""
    scp = config.scp
    return AssociationPolicy.build(
        (ae.ae_title for ae in scp.ae_titles),
        reject_unknown_sources=scp.reject_unknown_sources,
        sources=[
            (s.ae_title, resolve_host(s.host) if s.host is not None else None) for s in scp.sources
        ],
    )


def ae_options_from_config(
    config: AdapterConfig, ae_tags: Mapping[str, Sequence[str]] | None = None
) -> dict[str, AeOptions]:
    """Per-AE handler options: extra tags (from the composition root) and config flags."""
    tags = ae_tags or {}
    return {
        ae.ae_title: AeOptions(
            tags=tuple(tags.get(ae.ae_title, ())),
            overwrite=ae.overwrite_same_instance,
            ignored_sop_classes=frozenset(ae.ignored_sop_classes),
        )
        for ae in config.scp.ae_titles
    }


class ScpService(Service):
    """The SCP role (see the module docstring).

    ``ae_tags`` maps a called AE title to the extra tags (8 hex digits) its processor
    needs in ``instance.received.tags``. ``publisher_factory`` defaults to Kafka at
    ``config.kafka.bootstrap_servers`` (:func:`kafka_publisher_factory`); ``clock`` gives
    epoch ms; ``disk_usage`` overrides the watermark's view of the disk (tests);
    ``durable`` fsyncs files and directories.
    """

    def __init__(
        self,
        config: AdapterConfig,
        *,
        ae_tags: Mapping[str, Sequence[str]] | None = None,
        publisher_factory: PublisherFactory | None = None,
        clock: Callable[[], int] = epoch_ms,
        disk_usage: Callable[[Path], DiskUsage] | None = None,
        durable: bool = True,
        publish_timeout_s: float = 3.0,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self.config = config
        self._ae_tags = dict(ae_tags or {})
        self._factory = publisher_factory or kafka_publisher_factory(config)
        self._clock = clock
        self._disk_usage = disk_usage
        self._durable = durable
        self._publish_timeout = publish_timeout_s
        self._grace = shutdown_grace_s
        self.storage = config.storage.absolute()
        self._outbox: Outbox | None = None
        self._delivery: Delivery | None = None
        self._server: DicomServer | None = None
        self._heartbeat: HeartbeatSender | None = None
        self._beating: asyncio.Task[None] | None = None
        self._stop_beating = asyncio.Event()
        self._handler: StoreHandler | None = None

    @property
    def handler(self) -> StoreHandler:
        """The store path (C-STORE's, and STOW-RS's: :mod:`streams.dicomweb`)."""
        if self._handler is None:
            raise RuntimeError("ScpService is not started")
        return self._handler

    @property
    def port(self) -> int:
        """The bound DICOM port."""
        if self._server is None:
            raise RuntimeError("ScpService is not started")
        return self._server.port

    @property
    def tls_port(self) -> int:
        """The bound DICOM TLS port (with ``scp.tls``)."""
        if self._server is None:
            raise RuntimeError("ScpService is not started")
        return self._server.tls_port

    @property
    def server(self) -> DicomServer:
        """The listening DICOM server."""
        if self._server is None:
            raise RuntimeError("ScpService is not started")
        return self._server

    @property
    def delivery(self) -> Delivery:
        """The event delivery (direct/outbox state, :meth:`Delivery.wait_drained`)."""
        if self._delivery is None:
            raise RuntimeError("ScpService is not started")
        return self._delivery

    @property
    def outbox(self) -> Outbox:
        """The local outbox under ``<storage>/.outbox/<adapter_id>``."""
        if self._outbox is None:
            raise RuntimeError("ScpService is not started")
        return self._outbox

    async def start(self) -> None:
        """Open the outbox, connect (or not) to Kafka, and listen."""
        require_tested_pynetdicom()  # before anything is opened: the server would refuse
        scp = self.config.scp
        # Before anything is opened: a certificate that cannot be loaded is a config error.
        tls = server_context(scp.tls, "scp.tls") if scp.tls is not None else None
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.storage.mkdir, parents=True, exist_ok=True)
        self._outbox = await asyncio.to_thread(
            Outbox, outbox_dir(self.storage, self.config.adapter_id), durable=self._durable
        )
        try:
            pending = self._outbox.pending_bytes
            if pending:
                log.info("outbox holds %d bytes of events from a previous run", pending)
            self._delivery = Delivery(
                self._factory, self._outbox, publish_timeout_s=self._publish_timeout
            )
            await self._delivery.__aenter__()
            policy = await asyncio.to_thread(policy_from_config, self.config)
            gate = AssociationGate(policy)
            guard = SpaceGuard(
                self.storage,
                watermark_percent=scp.watermark_percent,
                reserve_space_gb=scp.reserve_space_gb,
            )
            if self._disk_usage is not None:
                guard = dataclasses.replace(guard, usage=self._disk_usage)
            self._handler = handler = StoreHandler(
                storage=self.storage,
                gate=gate,
                sink=LoopBridge(loop, self._delivery.deliver),
                topic=topic_names(self.config.kafka.topic_prefix).instances,
                source=self.config.adapter_id,
                ae_options=ae_options_from_config(self.config, self._ae_tags),
                guard=guard,
                clock=self._clock,
                durable=self._durable,
                keys=RecordKeys.of(self.config.kafka.record_key_secret()),
            )
            self._server = DicomServer(
                host=scp.host,
                port=scp.port,
                gate=gate,
                handler=handler,
                max_associations=scp.max_associations,
                max_pdu=scp.max_pdu,
                network_timeout_s=scp.network_timeout_s,
                acse_timeout_s=scp.acse_timeout_s,
                tls=tls,
                tls_port=scp.tls.port if scp.tls is not None else 0,
            )
            await asyncio.to_thread(self._server.start)
            self._heartbeat = self._heartbeats(self._delivery, self._server)
            self._beating = asyncio.create_task(
                self._heartbeat.run(self._stop_beating), name="scp-heartbeat"
            )
        except BaseException:
            await self.stop()
            raise

    def _heartbeats(self, delivery: Delivery, server: DicomServer) -> HeartbeatSender:
        """What this SCP still owes the bus, said on ``<prefix>.sources`` (issue 14)."""

        def owes() -> Owed:
            owed = delivery.owed()
            return replace(owed, associations=len(server.associations()))

        # After a freeze, senders that knocked meanwhile are accepted late: hold the
        # watermark while connections wait to be accepted and until the associations
        # opened since the freeze -- noted until nobody knocks any more -- are done
        # (HeartbeatSender asks once its minimum hold is over, and caps the hold).
        before: set[int] = set()
        late: set[int] | None = None
        knocked = False

        def on_stall() -> None:
            nonlocal late, knocked
            before.clear()
            before.update(id(a) for a in server.associations())
            late, knocked = None, False

        def busy() -> bool:
            nonlocal late, knocked
            open_now = {id(a) for a in server.associations()}
            knocking = server.knocking()
            if late is None or knocking or knocked:
                late = (late or set()) | (open_now - before)
            knocked = knocking
            return knocking or bool(late & open_now)

        return HeartbeatSender(
            source=self.config.adapter_id,
            topic=topic_names(self.config.kafka.topic_prefix).sources,
            publisher=lambda: delivery.publisher,
            clock=self._clock,
            owes=owes,
            interval_ms=self.config.scp.heartbeat_interval_ms,
            busy=busy,
            on_stall=on_stall,
            ae_titles=tuple(ae.ae_title for ae in self.config.scp.ae_titles),
        )

    async def stop(self) -> None:
        """Stop listening, finish open associations, close delivery and the outbox; say
        ``stopped`` on the sources topic when nothing is owed any more."""
        server, self._server = self._server, None
        if server is not None:
            # In a thread: C-STORE handlers still need this loop to finish their delivery.
            await asyncio.to_thread(server.stop, self._grace)
        beating, self._beating = self._beating, None
        if beating is not None:
            # The last heartbeat goes after the last delivery: "stopped" only once the
            # outbox is empty, else silence (it still owes; see HeartbeatSender.stopped).
            delivery_left = self._delivery
            if delivery_left is not None and delivery_left.connected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(delivery_left.wait_drained(), self._grace)
            self._stop_beating.set()
            await asyncio.gather(beating, return_exceptions=True)
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            await delivery.aclose()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.close()
