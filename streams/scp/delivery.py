"""Acknowledged means durable: every event reaches Kafka (acks=all) or the outbox first.

:meth:`Delivery.deliver` returns only once the event is acknowledged by Kafka or
fsynced to the :class:`~streams.scp.outbox.Outbox`; the SCP answers C-STORE Success
after that (DESIGN.md §4). Two modes:

* **direct** — the event is published and awaited (short timeout). Sends issued
  concurrently by several associations are batched by the producer.
* **outbox** — entered when the publisher is missing or a publish fails with a broker
  error (:data:`~streams.scp.failures.BROKER_ERRORS`), and on start-up when the outbox
  holds events from a previous run. New events are appended (group commit: one fsync
  for all appends waiting at that moment) and a background task publishes the outbox
  in order, with the same event ids, committing the offset only after the broker
  acknowledged. Once the outbox is empty, delivery goes direct again.

A publish that timed out is not cancelled: the producer may still deliver it (a
cancelled wait does not take a record back out of the producer). Its event goes to the
outbox like any other, and the drainer waits for that same send instead of sending
the event again, so a slow or paused broker causes no duplicates. Only a send that
failed, or one pending when the process died, is sent again from the outbox: the same
id twice, which consumers de-duplicate. Nothing acknowledged is lost.

Only the broker's failures go to the outbox. Any other error in publishing (a
``TypeError``, an encoding error...) is a bug that a retry will not cure:
:meth:`Delivery.deliver` raises it, the event is neither published nor queued, and the
SCP answers that C-STORE as an unexpected error. A bug while draining the outbox leaves
the events there (they are durable already) and is logged at ERROR; the drainer keeps
retrying, so they are published once the cause is gone.

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

from streams import metrics
from streams.events import Envelope, InstanceReceived
from streams.kafka import Publisher
from streams.kafka.heartbeat import Owed
from streams.scp.appender import OutboxAppender
from streams.scp.failures import BROKER_ERRORS, is_broker_error, traceback_without_message
from streams.scp.outbox import Outbox, OutboxEntry, encode_entry

log = logging.getLogger(__name__)


PublisherFactory = Callable[[], AbstractAsyncContextManager[Publisher]]


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
        self._appender = OutboxAppender(outbox)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._outage_logged = False  # one WARNING per outage, retries at DEBUG
        self._failure_logged = False  # one ERROR per run of drainer failures (bugs)
        # Sends that may still reach Kafka, by event id: reused rather than sent again.
        self._inflight: dict[str, asyncio.Future[tuple[int, int]]] = {}
        # What deliver() is handling (event id -> received_at); after it returns, what
        # is not acknowledged is in the outbox (its oldest entry: _outbox_oldest).
        self._delivering: dict[str, int] = {}
        self._outbox_oldest: int | None = None

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
        await self._appender.close()
        await self._close_publisher()

    @property
    def direct(self) -> bool:
        """True while events are published directly (the outbox is empty)."""
        return self._direct

    @property
    def connected(self) -> bool:
        """True while a publisher is open."""
        return self._publisher is not None

    @property
    def publisher(self) -> Publisher | None:
        """The open publisher, or ``None`` while Kafka is not reachable."""
        return self._publisher

    def owed(self) -> Owed:
        """What this source still owes the bus: the oldest ``received_at`` not yet
        acknowledged by Kafka, among what is being delivered and what waits in the
        outbox (a previous run's outbox counts from the epoch: its age is unknown)."""
        oldest = min(self._delivering.values(), default=None)
        outbox = self._outbox.pending_bytes
        if outbox:
            waiting = self._outbox_oldest if self._outbox_oldest is not None else 0
            oldest = waiting if oldest is None else min(oldest, waiting)
        return Owed(oldest, len(self._delivering), outbox)

    async def wait_drained(self) -> None:
        """Wait until the outbox is empty and delivery is direct (for tests and shutdown)."""
        while not (self._direct and self._outbox.pending_bytes == 0):
            self._wake.set()
            await asyncio.sleep(0.02)

    # -- the hot path -----------------------------------------------------------------

    async def deliver(self, topic: str, key: str, env: Envelope) -> None:
        """Return once the event is acknowledged by Kafka or fsynced to the outbox.

        Raises :class:`DeliveryError` when the outbox cannot be written. An error in
        publishing that is not a broker error (:mod:`streams.scp.failures`) is a bug: it
        is raised as it is, the event neither published nor in the outbox.
        """
        received_at = getattr(env.data, "received_at", env.time)
        self._delivering[env.id] = received_at
        try:
            await self._deliver(topic, key, env, received_at)
        finally:
            del self._delivering[env.id]

    async def _deliver(self, topic: str, key: str, env: Envelope, received_at: int) -> None:
        publisher = self._publisher
        if self._direct and publisher is not None:
            try:
                await self._await_send(publisher, topic, key, env)
            except BROKER_ERRORS as exc:
                if self._direct:
                    log.warning(
                        "publishing to Kafka failed (%s); events go to the outbox until "
                        "the broker is back",
                        _describe(exc),
                    )
                self._direct = False
            else:
                self._inflight.pop(env.id, None)
                _count_published([env])
                return
        else:
            self._direct = False
        try:
            await self._appender.append(encode_entry(OutboxEntry(topic, key, env)))
        except BaseException:
            self._inflight.pop(env.id, None)  # not acknowledged: nobody waits for it
            raise
        if self._outbox_oldest is None or received_at < self._outbox_oldest:
            self._outbox_oldest = received_at
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

    # -- background: connect and drain ------------------------------------------------

    async def _connect(self) -> bool:
        if self._publisher is not None:
            return True
        stack = contextlib.AsyncExitStack()
        try:
            publisher = await asyncio.wait_for(
                stack.enter_async_context(self._factory()), self._connect_timeout
            )
        except BROKER_ERRORS as exc:
            await _quietly_close(stack)
            self._outage("Kafka is not reachable (%s); received events go to the outbox", exc)
            self._direct = False
            return False
        except BaseException:
            await _quietly_close(stack)
            raise  # a bug (or a bad config) in opening the publisher, not an outage
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
            try:
                drained = await self._connect() and await self._drain_once()
            except Exception as exc:
                # Not the broker (both return False for that): a bug, or the outbox's own
                # disk. The events stay in the outbox, so the drainer must not die: it
                # says so once and keeps retrying until the cause is gone.
                self._failure(exc)
                drained = False
            if drained:
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
            if not self._appender.busy:
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
            if not self._outbox.pending_bytes:
                self._outbox_oldest = None
            log.info("outbox: %d events published", acked)
            if self._outage_logged or self._failure_logged:
                self._outage_logged = self._failure_logged = False
                log.info("Kafka acknowledges again; publishing the outbox")
            return True
        # Commit the acknowledged prefix: only what follows it is published again.
        failure = results[acked]
        if acked:
            _, prefix_end = await asyncio.to_thread(self._outbox.read, acked)
            await asyncio.to_thread(self._outbox.commit, prefix_end)
            metrics.set_outbox_depth(self._outbox.pending_bytes)
        if isinstance(failure, Exception) and not is_broker_error(failure):
            raise failure  # a bug: _run logs it; the rest stays in the outbox
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

    def _failure(self, exc: Exception) -> None:
        """Log a drainer failure that is not the broker's (a bug, the outbox's disk):
        ERROR once until the outbox drains again, then DEBUG."""
        if not self._failure_logged:
            self._failure_logged = True
            log.error(
                "outbox: publishing its events failed unexpectedly (%s); they stay in the "
                "outbox and publishing is retried\n%s",
                type(exc).__name__,
                traceback_without_message(exc),
            )
        log.debug("outbox: publishing failed", exc_info=exc)


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
