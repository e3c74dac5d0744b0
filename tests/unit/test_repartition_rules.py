"""Repartitioning's pure parts: which records are copied under which key, the rekeyed
topic's name, the processor hook that asks for it, and ticks that wait for the copier."""

from __future__ import annotations

import asyncio

from aiokafka.structs import ConsumerRecord

from processors.aetitle import AeTitleJobProcessor
from processors.roles.repartition import rekey
from processors.runtime.clock import BusClock
from processors.runtime.ticker import PartitionView, Ticker
from streams.events import ClockTick, Envelope, RecordKeys, SourceHeartbeat, encode, envelope
from streams.kafka import rekeyed_topic
from tests.helpers.instances import make_instance

T = 1_800_000_000_000
KEYS = RecordKeys(b"a test secret of the bus")


def record(offset: int, key: str | None, value: bytes | None, at: int = T) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(
        topic="p.instances", partition=3, offset=offset, timestamp=at, timestamp_type=1,
        key=None if key is None else key.encode(), value=value, checksum=None,
        serialized_key_size=0, serialized_value_size=0, headers=(),
    )  # fmt: skip


def instance_value(ae: str, modality: str) -> bytes:
    item = make_instance(received_at=T, ae=ae, tags={"00080060": modality})
    return encode(envelope(item, source="scp", time_ms=T))


def test_only_the_ae_titles_instances_are_copied_byte_for_byte_with_their_log_time() -> None:
    ct, mr = instance_value("MOD", "CT"), instance_value("MOD", "MR")
    other = instance_value("OTHER", "CT")
    tick = encode(envelope(ClockTick(T), source="p", time_ms=T))
    records = [
        record(0, "MOD/abc", ct, at=T + 1),
        record(1, "OTHER/abc", other),  # another AE title's: not ours
        record(2, "clock", tick),  # a tick of the instances partition: not copied
        record(3, "MOD/def", b"not json"),  # unreadable: counted, not copied
        record(4, "MOD/def", mr, at=T + 4),
        record(5, None, ct),  # no key: not an instance event of ours
    ]
    copies, unreadable = rekey(records, "MOD", lambda i: i.tags["00080060"], KEYS)
    assert copies == [(KEYS("MOD", "CT"), ct, T + 1), (KEYS("MOD", "MR"), mr, T + 4)]
    assert unreadable == 1


def test_rekeyed_topic_names_are_legal_and_keep_titles_apart() -> None:
    assert rekeyed_topic("dicom", "CLARA-MOD") == "dicom.rekeyed.CLARA-MOD"
    spaced, underscored = rekeyed_topic("dicom", "MY AE"), rekeyed_topic("dicom", "MY_AE")
    assert spaced.startswith("dicom.rekeyed.MY_AE-") and underscored == "dicom.rekeyed.MY_AE"
    assert spaced != underscored


def test_the_aetitle_processor_asks_for_repartitioning_only_for_tags_spanning_patients() -> None:
    def key_of(group_by: str):  # type: ignore[no-untyped-def]
        settings, _ = AeTitleJobProcessor.parse_settings(
            "AE", {"groupBy": group_by, "pipeline-a": "P"}, where="scp.ae_titles[0]"
        )
        return AeTitleJobProcessor.repartition_key(settings)

    for nested in ("0010,0020", "0020,000D", "0020,000E"):
        assert key_of(nested) is None
    key = key_of("0008,0060")
    assert key is not None
    assert key(make_instance(received_at=T, tags={"00080060": "MR "})) == "MR"  # padding removed
    assert key(make_instance(received_at=T, tags={})) == ""  # no key: the processor reclaims it


class Recorder:
    """A publisher that keeps what it was asked to write (the ticker's only output)."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int | None, Envelope]] = []

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> None:
        self.written.append((topic, partition, env))


def test_ticks_of_a_gated_topic_wait_for_the_gate() -> None:
    clock = BusClock(idle_timeout_ms=60_000, grace_ms=0)
    clock.heartbeat(SourceHeartbeat("scp", sent_at=T, watermark=T), appended=T, local=0)
    open_view = {0: PartitionView(next_due=T - 1, last_instance=T - 10)}
    caught_up = False

    async def gate() -> bool:
        return caught_up

    publisher = Recorder()
    ticker = Ticker(
        clock, publisher, sources_topic="p.sources", writer="proc",  # type: ignore[arg-type]
        owned=lambda: {"p.instances": open_view, "p.rekeyed.MOD": open_view},
        gates={"p.rekeyed.MOD": gate}, local=lambda: 0,
    )  # fmt: skip
    assert asyncio.run(ticker.round()) == {"p.instances": [0]}
    caught_up = True
    assert asyncio.run(ticker.round()) == {"p.rekeyed.MOD": [0]}  # instances: nothing new
    assert [(t, p) for t, p, _ in publisher.written] == [("p.instances", 0), ("p.rekeyed.MOD", 0)]
    assert all(isinstance(env.data, ClockTick) for _, _, env in publisher.written)
