"""A minimal Kafka shell around our processor, for the bench only (a stand-in).

Used while the real runtime (``processors/runtime``, ``dicom-adapter process``) is not
there, and kept as ``--ours shell`` to separate the cost of the processor + the
``streams.kafka`` bridge from what the runtime adds (ledger replay, exactly-once
bookkeeping). ``KafkaSource`` -> ``AeTitleJobProcessor`` -> after every batch the closed
groups are published (acks=all) to ``<prefix>.jobs``; the source commits below the
processor's open groups and the groups being published. No ledger replay on assignment.

    python -m bench.windows.ours_shell --kafka HOST:PORT --prefix P --group G --jobs-topic T
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence

from aiokafka.structs import TopicPartition

from bench.windows.data import AE_TITLE
from bench.windows.inproc import SETTINGS
from processors.aetitle import AeTitleJobProcessor
from processors.contracts import InstanceRef, Removal
from streams.events import GroupClosed, InstanceReceived, envelope
from streams.kafka import BatchEnd, EventPublisher, HeldOffsets, KafkaSource, Record, topic_names
from streams.kafka.commits import oldest


class BatchSink:
    """Keeps closed groups until the end of the read batch, then publishes them; their
    first inputs stay held until the broker acknowledged them."""

    def __init__(self) -> None:
        self.pending: list[GroupClosed] = []
        self.held: HeldOffsets[int] = HeldOffsets()

    def group_closed(self, record: GroupClosed, superseded: Sequence[InstanceRef] = ()) -> None:
        self.pending.append(record)
        self.held.hold(record.inputs[0].partition, record.inputs[0].offset)

    def remove(self, removal: Removal) -> None:
        raise RuntimeError(f"unexpected reclaim ({removal.reason})")


async def serve(
    bootstrap: str, prefix: str, group: str, jobs_topic: str, max_batch_kb: int | None = None
) -> None:
    topics = topic_names(prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    sink = BatchSink()
    first: list[int] = []
    options = {"max_batch_size": max_batch_kb * 1024} if max_batch_kb else None
    async with EventPublisher(
        bootstrap, client_id="bench-shell", producer_options=options
    ) as publisher:
        processor: AeTitleJobProcessor | None = None

        def bound(tp: TopicPartition) -> int | None:
            held = processor.held_offsets().get(tp.partition) if processor else None
            return oldest(held, sink.held.oldest(tp.partition))

        source = KafkaSource(
            bootstrap, [topics.instances], group, client_id="bench-shell", commit_bound=bound
        )
        async with source:
            processor = AeTitleJobProcessor(AE_TITLE, {}, sink, source.scheduler, settings=SETTINGS)
            processor.window.state.caught_up_default = False
            work: asyncio.Queue[list[GroupClosed]] = asyncio.Queue()

            def on_record(record: Record) -> None:
                if not first:
                    first.append(time.time_ns() // 1_000_000)
                    print(json.dumps({"first_record_ms": first[0]}), flush=True)
                data = record.envelope.data
                if isinstance(data, InstanceReceived) and processor is not None:
                    processor.on_next((record.partition, record.offset, data))

            def on_batch(batch: BatchEnd) -> None:
                for progress in batch.partitions:
                    assert processor is not None
                    processor.partition_caught_up(progress.partition, progress.caught_up)
                if sink.pending:
                    work.put_nowait(sink.pending)
                    sink.pending = []

            source.records.subscribe(on_record)
            source.batches.subscribe(on_batch)

            async def publish() -> None:
                while True:
                    records = await work.get()
                    now = time.time_ns() // 1_000_000
                    await publisher.publish_many(
                        jobs_topic,
                        [
                            (
                                f"{r.ae_title}/{r.patient_id}",
                                envelope(r, source="bench", time_ms=now),
                            )
                            for r in records
                        ],
                    )
                    for r in records:
                        sink.held.release(r.inputs[0].partition, r.inputs[0].offset)

            publisher_task = asyncio.create_task(publish())
            await stop.wait()
            publisher_task.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--jobs-topic", required=True)
    parser.add_argument(
        "--max-batch-kb",
        type=int,
        default=512,
        help="producer max_batch_size in KiB (512, as the runtime; aiokafka's default is 16)",
    )
    parser.add_argument("--profile", help="write a pyinstrument profile (text) here")
    parser.add_argument("--gc-threshold", help="gc.set_threshold, e.g. 50000,20,100")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.gc_threshold:
        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
    if not args.profile:
        asyncio.run(serve(args.kafka, args.prefix, args.group, args.jobs_topic, args.max_batch_kb))
        return 0
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        asyncio.run(serve(args.kafka, args.prefix, args.group, args.jobs_topic, args.max_batch_kb))
    finally:
        profiler.stop()
        with open(args.profile, "w", encoding="utf-8") as out:
            out.write(profiler.output_text(unicode=True, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
