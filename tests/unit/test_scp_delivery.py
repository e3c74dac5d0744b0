"""Delivery modes (direct / outbox) with an in-process publisher that can be made to fail.

The publisher here is a real implementation of the ``Publisher`` protocol that keeps
what it is given; the Kafka-backed paths are covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from streams.errors import BrokerError
from streams.events import Envelope, InstanceReceived, envelope
from streams.kafka import Publisher
from streams.scp.delivery import Delivery
from streams.scp.outbox import Outbox


def _env(n: int) -> Envelope:
    data = InstanceReceived(
        called_ae="CT",
        calling_ae="MOD",
        calling_host="127.0.0.1",
        association_id="a",
        sop_class_uid="1.2",
        sop_instance_uid=f"1.2.3.{n}",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id="PHI-PATIENT-ID",
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        received_at=n,
        uri=f"/data/{n}.dcm",
        size=1,
    )
    return envelope(data, source="test", time_ms=n)


class RecordingPublisher:
    """Keeps published envelopes; ``down`` makes every publish fail like a dead broker,
    ``error`` makes every publish raise that exception."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []
        self.attempts = 0
        self.attempted = asyncio.Event()  # set on every publish call
        self.down = False
        self.error: Exception | None = None
        self.fail_on: set[str] = set()  # event ids that fail once
        self.slow: asyncio.Event | None = None  # set: acks come only once it is set

    async def publish(self, topic: str, key: str, env: Envelope) -> tuple[int, int]:
        self.attempts += 1
        self.attempted.set()
        if self.error is not None:
            raise self.error
        if self.slow is not None:
            # Like a paused broker: the producer has the record (a cancelled wait does
            # not take it back) and acknowledges it when the broker answers again.
            self.published.append(env)
            await self.slow.wait()
            return 0, len(self.published) - 1
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("broker down")
        if env.id in self.fail_on:
            self.fail_on.discard(env.id)
            raise ConnectionError("one failure")
        self.published.append(env)
        return 0, len(self.published) - 1


def factory(publisher: RecordingPublisher, refuse: list[bool] | None = None):  # type: ignore[no-untyped-def]
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Publisher]:
        if refuse and refuse[0]:
            raise ConnectionError("cannot bootstrap")
        yield publisher

    return connect


def _delivery(outbox: Outbox, connect, close_drain_s: float = 0.1) -> Delivery:  # type: ignore[no-untyped-def]
    return Delivery(
        connect,
        outbox,
        publish_timeout_s=1.0,
        retry_min_s=0.01,
        retry_max_s=0.05,
        close_drain_timeout_s=close_drain_s,
    )


@pytest.fixture
def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / ".outbox")
    yield box
    box.close()


async def test_direct_when_the_broker_acks(outbox: Outbox) -> None:
    pub = RecordingPublisher()
    async with _delivery(outbox, factory(pub)) as delivery:
        await asyncio.gather(*(delivery.deliver("t", "k", _env(i)) for i in range(10)))
        assert delivery.direct
    assert len(pub.published) == 10 and outbox.offsets() == (0, 0)


async def test_outage_goes_to_outbox_then_drains_in_order_with_same_ids(outbox: Outbox) -> None:
    pub = RecordingPublisher()
    async with _delivery(outbox, factory(pub)) as delivery:
        await delivery.deliver("t", "k", _env(0))
        pub.down = True
        for i in range(1, 6):
            await delivery.deliver("t", "k", _env(i))  # returns: durable in the outbox
        assert not delivery.direct
        queued = [e.envelope for e in outbox.read()[0]]
        assert [e.data.sop_instance_uid for e in queued] == [f"1.2.3.{i}" for i in range(1, 6)]
        pub.down = False
        await asyncio.wait_for(delivery.wait_drained(), 10)
        assert delivery.direct
        await delivery.deliver("t", "k", _env(6))
    assert [e.data.sop_instance_uid for e in pub.published] == [f"1.2.3.{i}" for i in range(7)]
    assert [e.id for e in pub.published[1:6]] == [e.id for e in queued]
    assert outbox.offsets() == (0, 0)  # drained and reset


async def test_partial_batch_failure_commits_the_acked_prefix(outbox: Outbox) -> None:
    pub = RecordingPublisher()
    pub.down = True
    async with _delivery(outbox, factory(pub)) as delivery:
        envs = [_env(i) for i in range(5)]
        for env in envs:
            await delivery.deliver("t", "k", env)
        pub.fail_on = {envs[2].id}
        pub.down = False
        await asyncio.wait_for(delivery.wait_drained(), 10)
    ids = [e.id for e in pub.published]
    # 2 failed once and only it was sent again: 3 and 4 were acknowledged in the same
    # round and are not sent twice (they wait in the outbox behind 2 until it is acked).
    assert sorted(ids) == sorted(e.id for e in envs)
    assert ids[:2] == [envs[0].id, envs[1].id] and ids[-1] == envs[2].id
    assert outbox.offsets() == (0, 0)


async def test_unreachable_at_start_keeps_accepting_and_connects_later(outbox: Outbox) -> None:
    pub = RecordingPublisher()
    refuse = [True]
    async with _delivery(outbox, factory(pub, refuse)) as delivery:
        assert not delivery.connected
        for i in range(3):
            await delivery.deliver("t", "k", _env(i))
        assert outbox.pending_bytes > 0 and pub.published == []
        refuse[0] = False
        await asyncio.wait_for(delivery.wait_drained(), 10)
        assert delivery.connected
    assert [e.data.sop_instance_uid for e in pub.published] == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]


async def test_leftovers_are_published_on_start(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    pub = RecordingPublisher()
    pub.down = True
    async with _delivery(box, factory(pub)) as delivery:
        await delivery.deliver("t", "k", _env(1))
    box.close()  # as if the process stopped while the broker was down
    again = Outbox(tmp_path)
    try:
        healthy = RecordingPublisher()
        async with _delivery(again, factory(healthy)) as delivery:
            assert not delivery.direct
            await asyncio.wait_for(delivery.wait_drained(), 10)
        assert [e.data.sop_instance_uid for e in healthy.published] == ["1.2.3.1"]
    finally:
        again.close()


async def test_close_gives_the_outbox_a_last_chance(outbox: Outbox) -> None:
    pub = RecordingPublisher()
    pub.down = True
    async with _delivery(outbox, factory(pub), close_drain_s=10) as delivery:
        await delivery.deliver("t", "k", _env(1))
        pub.down = False
    assert [e.data.sop_instance_uid for e in pub.published] == ["1.2.3.1"]
    assert outbox.pending_bytes == 0


async def test_send_that_times_out_is_not_sent_again_from_the_outbox(outbox: Outbox) -> None:
    """Found by the chaos suite (seed 2): during a broker pause the SCP re-sent events whose
    first send had timed out but was still in the producer, so one C-STORE reached the
    instances topic three times and a processor formed a second group for it."""
    pub = RecordingPublisher()
    pub.slow = asyncio.Event()
    delivery = Delivery(
        factory(pub), outbox, publish_timeout_s=0.05, retry_min_s=0.01, retry_max_s=0.02
    )
    async with delivery:
        envs = [_env(i) for i in range(4)]
        for env in envs:
            await delivery.deliver("t", "k", env)  # durable in the outbox after the timeout
        assert not delivery.direct
        for _ in range(20):  # the drainer retries several rounds while the broker is paused
            await asyncio.sleep(0.02)
        pub.slow.set()
        await asyncio.wait_for(delivery.wait_drained(), 10)
        assert delivery.direct
    assert sorted(e.id for e in pub.published) == sorted(e.id for e in envs)  # once each


# -- broker errors go to the outbox, bugs do not ------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError("broker down"),
        KafkaTimeoutError(),
        BrokerError("publishing instance.received to t failed"),
        TimeoutError(),
        ConnectionResetError(104, "reset by peer"),
    ],
    ids=type,
)
async def test_broker_errors_send_the_event_to_the_outbox(outbox: Outbox, error: Exception) -> None:
    pub = RecordingPublisher()
    pub.error = error
    env = _env(1)
    async with _delivery(outbox, factory(pub)) as delivery:
        await delivery.deliver("t", "k", env)  # returns: durable in the outbox
        assert not delivery.direct
        assert [e.envelope.id for e in outbox.read()[0]] == [env.id]
        pub.error = None
        await asyncio.wait_for(delivery.wait_drained(), 10)
    assert [e.data.sop_instance_uid for e in pub.published] == ["1.2.3.1"]


async def test_a_bug_in_publishing_is_raised_not_sent_to_the_outbox(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    pub = RecordingPublisher()
    pub.error = TypeError("a bug")
    async with _delivery(outbox, factory(pub)) as delivery:
        with pytest.raises(TypeError, match="a bug"):
            await delivery.deliver("t", "k", _env(1))
        assert outbox.pending_bytes == 0 and outbox.read()[0] == []
        assert delivery.direct  # not taken for an outage: the next event goes straight on
        pub.error = None
        await delivery.deliver("t", "k", _env(2))
        assert outbox.pending_bytes == 0
    assert [e.data.sop_instance_uid for e in pub.published] == ["1.2.3.2"]
    assert not [r for r in caplog.records if "outbox" in r.getMessage()]


async def test_a_bug_in_opening_the_publisher_fails_the_start(outbox: Outbox) -> None:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Publisher]:
        raise AttributeError("a bug")
        yield RecordingPublisher()  # pragma: no cover

    with pytest.raises(AttributeError, match="a bug"):
        async with _delivery(outbox, connect):
            pass


async def test_a_bug_while_draining_keeps_the_events_and_is_logged_once(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    pub = RecordingPublisher()
    pub.down = True
    caplog.set_level(logging.DEBUG, logger="streams.scp.delivery")
    async with _delivery(outbox, factory(pub)) as delivery:
        envs = [_env(i) for i in range(3)]
        for env in envs:
            await delivery.deliver("t", "k", env)
        # The drainer now hits a bug whose message quotes the event (PHI).
        pub.error = TypeError("cannot encode PHI-PATIENT-ID")
        seen = pub.attempts
        while pub.attempts < seen + 3:  # three drain rounds fail
            pub.attempted.clear()
            await asyncio.wait_for(pub.attempted.wait(), 10)
        assert [e.envelope.id for e in outbox.read()[0]] == [e.id for e in envs]
        pub.error = None
        pub.down = False
        await asyncio.wait_for(delivery.wait_drained(), 10)
    assert [e.id for e in pub.published] == [e.id for e in envs]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "Traceback (most recent call last)" in errors[0].getMessage()
    assert "TypeError" in errors[0].getMessage()
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in loud if "PHI-PATIENT-ID" in r.getMessage() or r.exc_info]
