"""Acknowledged means durable: every event reaches Kafka (acks=all) or the outbox first.

:meth:`Delivery.deliver` returns only once the event is acknowledged by Kafka or
fsynced to the :class:`~streams.scp.outbox.Outbox`; the SCP answers C-STORE Success
after that (DESIGN.md §4). Two modes:

* **direct** — the event is published and awaited (short timeout). Sends issued
  concurrently by several associations are batched by the producer.
* **outbox** — entered when the publisher is missing or a publish fails, and on start-up
  when the outbox holds events from a previous run. New events are appended (group
  commit: one fsync for all appends waiting at that moment) and a background task
  publishes the outbox in order, with the same event ids, committing the offset only
  after the broker acknowledged. Once the outbox is empty, delivery goes direct again.

A publish that timed out is not cancelled: the producer may still deliver it (a
cancelled wait does not take a record back out of the producer). Its event goes to the
outbox like any other, and the drainer waits for that same send instead of sending
the event again, so a slow or paused broker causes no duplicates. Only a send that
failed, or one pending when the process died, is sent again from the outbox: the same
id twice, which consumers de-duplicate. Nothing acknowledged is lost.
Runs entirely on one asyncio loop; see :mod:`streams.scp.bridge` for the one crossing
from pynetdicom's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from streams import metrics
from streams.events import Envelope, InstanceReceived
from streams.scp.outbox import Outbox, OutboxEntry, encode_entry

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What delivery needs from a Kafka producer (``streams.kafka.EventPublisher``)."""

    async def publish(self, topic: str, key: str, env: Envelope) -> tuple[int, int]:
        """Send and wait for acks=all; returns (partition, offset)."""
        ...


PublisherFactory = Callable[[], AbstractAsyncContextManager[Publisher]]


class DeliveryError(Exception):
    """The event is neither in Kafka nor in the outbox (e.g. the disk is full)."""


class Delivery:
    """Publishes events directly or through the outbox; see the module docstring.

    Use as an async context manager inside the running loop. ``publisher_factory``
    is called (again after failures) to open a publisher; it may fail while the broker
    is unreachable — events then go to the outbox and opening is retried.
    """

    def __init__(
        self,
        publisher_factory: PublisherFactory,
        outbox: Outbox,
        *,
        publish_timeout_s: float = 3.0,
        connect_timeout_s: float = 10.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        batch_size: int = 500,
        close_drain_timeout_s: float = 5.0,
    ) -> None:
        self._factory = publisher_factory
        self._outbox = outbox
        self._publish_timeout = publish_timeout_s
        self._connect_timeout = connect_timeout_s
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._batch = batch_size
        self._close_drain = close_drain_timeout_s
        self._publisher: Publisher | None = None
        self._stack = contextlib.AsyncExitStack()
        self._direct = outbox.pending_bytes == 0
        metrics.set_outbox_depth(outbox.pending_bytes)
        self._appending = 0
        self._queued: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._outage_logged = False  # one WARNING per outage, retries at DEBUG
        # Sends that may still reach Kafka, by event id: reused rather than sent again.
        self._inflight: dict[str, asyncio.Future[tuple[int, int]]] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Delivery:
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="outbox-drainer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give the outbox a last chance to drain, then stop and close the publisher.

        Events still unsent after ``close_drain_timeout_s`` stay in the outbox for the
        next start.
        """
        if self._task is not None and self._publisher is not None and not self._direct:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_drained(), self._close_drain)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        await self._close_publisher()

    @property
    def direct(self) -> bool:
        """True while events are published directly (the outbox is empty)."""
        return self._direct

    @property
    def connected(self) -> bool:
        """True while a publisher is open."""
        return self._publisher is not None

    async def wait_drained(self) -> None:
        """Wait until the outbox is empty and delivery is direct (for tests and shutdown)."""
        while not (self._direct and self._outbox.pending_bytes == 0):
            self._wake.set()
            await asyncio.sleep(0.02)

    # -- the hot path -----------------------------------------------------------------

    async def deliver(self, topic: str, key: str, env: Envelope) -> None:
        """Return once the event is acknowledged by Kafka or fsynced to the outbox."""
        publisher = self._publisher
        if self._direct and publisher is not None:
            try:
                await self._await_send(publisher, topic, key, env)
                self._inflight.pop(env.id, None)
                _count_published([env])
                return
            except Exception as exc:
                if self._direct:
                    log.warning(
                        "publishing to Kafka failed (%s); events go to the outbox until "
                        "the broker is back",
                        _describe(exc),
                    )
                self._direct = False
        else:
            self._direct = False
        try:
            await self._append(encode_entry(OutboxEntry(topic=topic, key=key, envelope=env)))
        except BaseException:
            self._inflight.pop(env.id, None)  # not acknowledged: nobody waits for it
            raise
        self._wake.set()

    def _send(
        self, publisher: Publisher, topic: str, key: str, env: Envelope
    ) -> asyncio.Future[tuple[int, int]]:
        """The send of ``env`` still in flight or done, else a new one."""
        sent = self._inflight.get(env.id)
        if sent is not None:
            return sent
        sent = asyncio.ensure_future(publisher.publish(topic, key, env))
        self._inflight[env.id] = sent
        sent.add_done_callback(functools.partial(self._sent, env.id))
        return sent

    def _sent(self, event_id: str, done: asyncio.Future[tuple[int, int]]) -> None:
        """A failed send is forgotten (the outbox sends the event again)."""
        failed = done.cancelled() or done.exception() is not None
        if failed and self._inflight.get(event_id) is done:
            del self._inflight[event_id]

    async def _await_send(self, publisher: Publisher, topic: str, key: str, env: Envelope) -> None:
        """Wait up to the publish timeout for the send of ``env``; a timeout leaves the
        send running (see the module docstring)."""
        sent = self._send(publisher, topic, key, env)
        await asyncio.wait_for(asyncio.shield(sent), self._publish_timeout)

    async def _append(self, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._appending += 1
        self._queued.append((line, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="outbox-writer")
        try:
            await fut
        finally:
            self._appending -= 1

    async def _write_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await asyncio.to_thread(self._outbox.append, [line for line, _ in batch])
            except Exception as exc:
                log.error("cannot write to the outbox: %s", exc)
                err = DeliveryError(f"outbox write failed: {exc}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            metrics.set_outbox_depth(self._outbox.pending_bytes)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    # -- background: connect and drain ------------------------------------------------

    async def _connect(self) -> bool:
        if self._publisher is not None:
            return True
        stack = contextlib.AsyncExitStack()
        try:
            publisher = await asyncio.wait_for(
                stack.enter_async_context(self._factory()), self._connect_timeout
            )
        except Exception as exc:
            await _quietly_close(stack)
            self._outage("Kafka is not reachable (%s); received events go to the outbox", exc)
            self._direct = False
            return False
        self._stack = stack
        self._publisher = publisher
        self._connected.set()
        log.info("connected to Kafka")
        return True

    async def _close_publisher(self) -> None:
        self._publisher = None
        self._connected.clear()
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        await _quietly_close(stack)

    async def _run(self) -> None:
        delay = self._retry_min
        while True:
            if self._direct and self._outbox.pending_bytes == 0:
                self._wake.clear()
                await self._wake.wait()
            if not await self._connect():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            if await self._drain_once():
                delay = self._retry_min
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _drain_once(self) -> bool:
        """Publish one batch from the outbox; False if the broker did not take it all."""
        publisher = self._publisher
        assert publisher is not None
        entries, end = await asyncio.to_thread(self._outbox.read, self._batch)
        if not entries:
            await asyncio.to_thread(self._outbox.commit, end)
            if self._appending == 0 and not self._queued:
                # Nothing queued for the outbox: flip back to direct before any await,
                # so no event can slip in between the check and the flip.
                self._direct = True
                await asyncio.to_thread(self._outbox.reset_if_drained)
            else:
                await asyncio.sleep(0.005)  # an append is in flight; read it next round
            return True
        results = await asyncio.gather(
            *(self._await_send(publisher, e.topic, e.key, e.envelope) for e in entries),
            return_exceptions=True,
        )
        acked = 0
        for result in results:
            if isinstance(result, BaseException):
                break
            acked += 1
        for entry in entries[:acked]:
            self._inflight.pop(entry.envelope.id, None)
        _count_published(e.envelope for e in entries[:acked])
        if acked == len(entries):
            await asyncio.to_thread(self._outbox.commit, end)
            metrics.set_outbox_depth(self._outbox.pending_bytes)
            log.info("outbox: %d events published", acked)
            if self._outage_logged:
                self._outage_logged = False
                log.info("Kafka acknowledges again; publishing the outbox")
            return True
        # Commit the acknowledged prefix: only what follows it is published again.
        failure = results[acked]
        if acked:
            _, prefix_end = await asyncio.to_thread(self._outbox.read, acked)
            await asyncio.to_thread(self._outbox.commit, prefix_end)
            metrics.set_outbox_depth(self._outbox.pending_bytes)
        self._outage(
            "outbox: broker did not acknowledge (%s); %d of %d published, retrying",
            _describe(failure),
            acked,
            len(entries),
        )
        return False

    def _outage(self, message: str, *args: object) -> None:
        level = logging.DEBUG if self._outage_logged else logging.WARNING
        self._outage_logged = True
        log.log(level, message, *args)


def _count_published(envs: Iterable[Envelope]) -> None:
    """Count acknowledged instance.received events per called AE title."""
    for env in envs:
        if isinstance(env.data, InstanceReceived):
            metrics.instances_published(env.data.called_ae)


def _describe(exc: object) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


async def _quietly_close(stack: contextlib.AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except Exception as exc:
        log.debug("closing the publisher failed: %s", exc)
