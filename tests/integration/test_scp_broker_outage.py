"""Acknowledged means durable: with Kafka unreachable every C-STORE still succeeds and
its event waits in the outbox; once the broker is reachable the events are published
in order, each exactly once, with the ids they were given at receipt."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import scu
from helpers.dicom import make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.scp import scp_config
from pydicom.uid import generate_uid

from streams.events import RecordKeys
from streams.scp import ScpService, outbox_dir

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _study(directory: Path, patient: str, count: int) -> list[Path]:
    study, series = generate_uid(), generate_uid()
    return write_instances(
        directory,
        [
            make_ct(patient_id=patient, study_uid=study, series_uid=series, instance_number=i)
            for i in range(count)
        ],
    )


def _tear(log: Path) -> None:
    with open(log, "ab") as f:
        f.write(b'{"topic": "x", "key": "CT-AE/P1", "event": {"type": "inst')


@contextlib.asynccontextmanager
async def tcp_forwarder(port: int, target: str) -> AsyncIterator[None]:
    """Listen on ``port`` and pipe every connection to ``target`` (the broker "comes back")."""
    host, _, target_port = target.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_broker_unreachable_then_outbox_replayed_after_restart(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    files = _study(tmp_path / "in", "P1", 20)
    dead = f"127.0.0.1:{_unused_port()}"
    async with ScpService(scp_config(storage, dead, prefix)) as scp:
        assert not scp.delivery.connected
        proc = await asyncio.to_thread(storescu, scp.port, files, aec="CT-AE")
        assert proc.returncode == 0 and "E:" not in proc.stderr, proc.stderr
        waiting, _ = scp.outbox.read()
    assert len(waiting) == 20
    assert len(list((storage / "CT-AE").rglob("*.dcm"))) == 20
    ids = sorted(e.envelope.id for e in waiting)

    # A torn line, as a crash in the middle of an append leaves it, is ignored.
    await asyncio.to_thread(_tear, outbox_dir(storage, "test-adapter") / "events.jsonl")

    async with ScpService(scp_config(storage, kafka_bootstrap, prefix)) as scp:
        await asyncio.wait_for(scp.delivery.wait_drained(), 60)
        events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=20)
    assert sorted(env.id for _, env in events) == ids  # same ids, each exactly once
    assert [env.data.received_at for _, env in events] == sorted(
        env.data.received_at for _, env in events
    )  # one key, one partition: in the order they were received
    assert not (outbox_dir(storage, "test-adapter") / "events.jsonl").exists()


async def test_broker_comes_back_while_receiving(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    port = _unused_port()
    before = _study(tmp_path / "before", "P1", 15)
    after = _study(tmp_path / "after", "P2", 5)
    async with ScpService(scp_config(storage, f"127.0.0.1:{port}", prefix)) as scp:
        proc = await asyncio.to_thread(storescu, scp.port, before, aec="CT-AE")
        assert proc.returncode == 0 and "E:" not in proc.stderr, proc.stderr
        assert not scp.delivery.direct and scp.outbox.pending_bytes > 0
        queued = sorted(e.envelope.id for e in scp.outbox.read()[0])
        async with tcp_forwarder(port, kafka_bootstrap):
            await asyncio.wait_for(scp.delivery.wait_drained(), 60)
            assert scp.delivery.direct and scp.delivery.connected
            proc = await asyncio.to_thread(storescu, scp.port, after, aec="CT-AE")
            assert proc.returncode == 0 and "E:" not in proc.stderr, proc.stderr
            assert scp.outbox.pending_bytes == 0  # published directly this time
            events = await read_events(kafka_bootstrap, f"{prefix}.instances", at_least=20)
    assert len(events) == 20 and len({env.id for _, env in events}) == 20
    p1 = sorted(env.id for key, env in events if key == RecordKeys()("CT-AE", "P1"))
    assert p1 == queued
    assert sorted(
        env.data.sop_instance_uid for key, env in events if key == RecordKeys()("CT-AE", "P2")
    ) == sorted(f.stem for f in after)


async def test_neither_kafka_nor_outbox_answers_out_of_resources(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    dead = f"127.0.0.1:{_unused_port()}"
    async with ScpService(scp_config(storage, dead, prefix)) as scp:
        # The outbox log cannot be opened: a directory sits where the file goes.
        await asyncio.to_thread((scp.outbox.directory / "events.jsonl").mkdir)
        _, statuses = await asyncio.to_thread(scu.store, scp.port, [make_ct()], aec="CT-AE")
        assert statuses == [0xA700]
