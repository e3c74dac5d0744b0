"""The exporter as a LogFollower handler: what it attempts, when, what it commits, what it
removes -- driven as the follower drives it, with a recording publisher and sender."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from processors.export import ExportService
from processors.submit.backoff import RetryPolicy
from streams.errors import BrokerError
from streams.events import (
    Envelope,
    ExportFile,
    ExportRequested,
    ExportRetryRequested,
    envelope,
)
from streams.scu import ItemLike, Progress, SendItem, SendOutcome
from streams.storage.exports import export_dir

NOW = 1_750_000_000.0
TOPIC = "t.exports"


class Log:
    """A publisher that keeps what it is given (``fail`` times a BrokerError first)."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[tuple[str, Envelope]] = []
        self.fail = fail

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> tuple[int, int]:
        if self.fail:
            self.fail -= 1
            raise BrokerError("broker away (test)")
        self.events.append((key, env))
        return 0, len(self.events) - 1

    async def publish_many(
        self,
        topic: str,
        items: Iterable[tuple[str, Envelope]],
        *,
        partitions: Sequence[int | None] | None = None,
    ) -> list[tuple[int, int]]:
        return [await self.publish(topic, k, e) for k, e in items]

    def types(self) -> list[str]:
        return [e.type for _, e in self.events]


class Sender:
    """Answers ``status`` for every item (0 = sent); ``gate`` holds a send until set."""

    def __init__(self, status: int = 0x0000) -> None:
        self.status = status
        self.sent: list[str] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()  # a send began

    async def send(
        self, items: Sequence[ItemLike], progress: Progress | None = None
    ) -> list[SendOutcome]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        out = []
        for i, item in enumerate(items):
            assert isinstance(item, SendItem)
            self.sent.append(item.label)
            kind = "sent" if self.status == 0 else "refused"
            out.append(
                SendOutcome(
                    i,
                    item.label,
                    kind,
                    sop_instance_uid=f"1.2.{Path(item.label).stem}",
                    status=self.status,
                )
            )
        return out


def service(
    tmp_path: Path, senders: dict[str, Sender], log: Log, retention_s: float = 0.0
) -> ExportService:
    return ExportService(
        storage=tmp_path,
        senders=senders,
        publisher=log,
        topic=TOPIC,
        policy=RetryPolicy(1, 0.01, 0.01),
        source="test",
        batch_size=2,
        retention_s=retention_s,
        clock=lambda: NOW,
        rand=lambda: 0.0,
    )


def requested(tmp_path: Path, request_id: str, *destinations: str, n: int = 3) -> Envelope:
    folder = export_dir(tmp_path, request_id)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        (folder / f"{i}.dcm").write_bytes(b"x")
        files.append(ExportFile(str(folder / f"{i}.dcm"), f"1.2.{i}"))
    return envelope(
        ExportRequested(request_id, destinations, tuple(files)), source="t", time_ms=int(NOW * 1000)
    )


async def settle(
    svc: ExportService,
    until: int,
    log: Log,
    done: Callable[[], bool] | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Run the worker loop until ``log`` holds ``until`` events (or ``done()``), at most
    ``timeout_s`` (a poll with a deadline; the caller asserts what happened)."""
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    for _ in range(int(timeout_s / 0.01)):
        if len(log.events) >= until and (done is None or done()):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task


def test_nothing_is_attempted_before_the_partition_is_caught_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        log, pacs = Log(), Sender()
        svc = service(tmp_path, {"pacs": pacs}, log)
        svc.assigned(frozenset({0}))
        svc.record(0, 5, "r1", requested(tmp_path, "r1", "pacs"))
        assert svc.committable(0) == 5  # the record that opened it
        await settle(svc, 1, log, timeout_s=0.3)  # a loop that would attempt, does so at once
        assert log.events == [] and pacs.sent == []
        svc.caught_up(0)
        await settle(svc, 2, log)
        assert log.types() == ["export.progress", "export.completed"]
        assert len(pacs.sent) == 3
        assert svc.committable(0) == 6  # settled: everything folded
        assert not export_dir(tmp_path, "r1").exists()  # delivered everywhere: removed

    asyncio.run(scenario())


def test_a_dead_letter_keeps_its_files_until_the_retention_and_a_retry_reopens(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        log, pacs = Log(), Sender(status=0xA900)
        svc = service(tmp_path, {"pacs": pacs}, log, retention_s=3600)
        svc.assigned(frozenset({0}))
        svc.record(0, 0, "r1", requested(tmp_path, "r1", "pacs"))
        svc.caught_up(0)
        await settle(svc, 2, log)
        assert log.types()[-1] == "export.failed"
        assert export_dir(tmp_path, "r1").exists()  # dead-lettered: kept
        pacs.status = 0
        retry = ExportRetryRequested("r1", "pacs", "ops", "fixed")
        svc.record(0, 9, "r1", envelope(retry, source="cli", time_ms=int(NOW * 1000)))
        assert svc.committable(0) == 9
        await settle(svc, 4, log)
        assert log.types()[-1] == "export.completed"
        assert not export_dir(tmp_path, "r1").exists()

    asyncio.run(scenario())


def test_retention_removes_a_dead_letters_files_once_passed(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = Log()
        svc = service(tmp_path, {"pacs": Sender(status=0xA900)}, log, retention_s=60)
        svc.assigned(frozenset({0}))
        svc.record(0, 0, "r1", requested(tmp_path, "r1", "pacs"))
        svc.caught_up(0)
        await settle(svc, 2, log)
        assert export_dir(tmp_path, "r1").exists()
        svc.clock = lambda: NOW + 61
        await settle(svc, 0, log, done=lambda: not export_dir(tmp_path, "r1").exists())
        assert not export_dir(tmp_path, "r1").exists()

    asyncio.run(scenario())


def test_revocation_waits_for_the_attempt_in_flight_and_a_broker_outage_is_waited_out(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        log, pacs = Log(fail=2), Sender()
        pacs.gate = asyncio.Event()
        svc = service(tmp_path, {"pacs": pacs}, log)
        svc.assigned(frozenset({0}))
        svc.record(0, 0, "r1", requested(tmp_path, "r1", "pacs", n=1))
        svc.caught_up(0)
        stop = asyncio.Event()
        runner = asyncio.create_task(svc.run(stop))
        await asyncio.wait_for(pacs.entered.wait(), 10)  # the attempt is in flight
        revoking = asyncio.create_task(svc.revoked(frozenset({0})))
        for _ in range(100):  # every chance to finish early; no I/O is pending but the send
            await asyncio.sleep(0)
        assert not revoking.done()  # the attempt in flight must end first
        pacs.gate.set()
        await asyncio.wait_for(revoking, 10)
        assert log.types() == ["export.completed"]  # written after two broker errors
        stop.set()
        await runner

    asyncio.run(scenario())


def test_an_unknown_destination_dead_letters_without_sending(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = Log()
        svc = service(tmp_path, {}, log)
        svc.assigned(frozenset({0}))
        svc.record(0, 0, "r1", requested(tmp_path, "r1", "gone"))
        svc.caught_up(0)
        await settle(svc, 1, log)
        ((_key, env),) = log.events
        assert (
            env.type == "export.failed"
            and "not in export.destinations" in env.data.instances[0].error
        )  # type: ignore[union-attr]

    asyncio.run(scenario())
