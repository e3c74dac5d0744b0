"""``dicom-adapter events`` — print events from the adapter's topics, one per line.

The auditor's tool (DESIGN.md §3.1). It reads with a group-less consumer (manual
partition assignment), so it never joins, rebalances or commits any consumer group.
Without ``--follow`` it stops at the end offsets it saw when it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_bootstrap
from streams.errors import BrokerError
from streams.events import (
    Envelope,
    EventDecodeError,
    GroupClosed,
    InstanceReceived,
    InstancesRemoved,
    JobFailed,
    JobSubmitted,
    decode,
    to_dict,
)
from streams.kafka import partition_counts, topic_names

log = logging.getLogger(__name__)

_POLL_MS = 500


def register(subparsers: Any) -> None:
    """Add ``events`` to the CLI."""
    parser = subparsers.add_parser(
        "events",
        help="print events (instances and jobs topics), one per line",
        description=(
            "Print the adapter's events one per line: time, position, type and short "
            "fields (no patient data), or the whole envelope with --json. Reads without "
            "a consumer group, so it never disturbs the processors."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "--topic",
        choices=["instances", "jobs"],
        help="which topic (default: both)",
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest event kept"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new events until Ctrl-C"
    )
    parser.add_argument("--json", action="store_true", help="print each envelope as JSON")
    parser.set_defaults(handler=run_events)


def run_events(args: argparse.Namespace) -> int:
    """Handler of ``events``; returns the exit code."""
    config = load_settings(args)
    bootstrap = resolve_bootstrap(args, config)
    names = topic_names(config.kafka.topic_prefix)
    topics = [names.instances, names.jobs]
    if args.topic == "instances":
        topics = [names.instances]
    elif args.topic == "jobs":
        topics = [names.jobs]
    render = _json_line if args.json else human_line
    try:
        return asyncio.run(
            print_events(
                bootstrap,
                topics,
                from_beginning=args.from_beginning,
                follow=args.follow,
                render=render,
                out=sys.stdout,
            )
        )
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error; keep Python from complaining.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


async def print_events(
    bootstrap: str,
    topics: Iterable[str],
    *,
    from_beginning: bool,
    follow: bool,
    render: Callable[[str, int, int, Envelope], str],
    out: TextIO,
) -> int:
    """Print the events of ``topics``; returns the exit code (1 if no topic exists)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id="dicom-adapter-events",
        fetch_max_wait_ms=200,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        tps = await _partitions(bootstrap, list(topics))
        if not tps:
            raise BrokerError(
                f"none of the topics {', '.join(topics)} exist at {bootstrap}; "
                "check --kafka and kafka.topic_prefix"
            )
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        ends: dict[TopicPartition, int] = {}
        if not follow:
            ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if follow or await consumer.position(tp) < ends[tp]}
        while follow or remaining:
            batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=1000)
            lines: list[str] = []
            for tp, messages in batch.items():
                for msg in messages:
                    if not follow and msg.offset >= ends[tp]:
                        continue
                    line = _render(render, tp, msg)
                    if line is not None:
                        lines.append(line)
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
            if not follow:
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return 0
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    counts = await partition_counts(bootstrap, topics)
    if counts:
        for topic in topics:
            if topic not in counts:
                print(f"dicom-adapter: warning: no topic {topic} (yet)", file=sys.stderr)
    return [TopicPartition(topic, p) for topic in topics for p in range(counts.get(topic, 0))]


def _render(
    render: Callable[[str, int, int, Envelope], str], tp: TopicPartition, msg: Any
) -> str | None:
    try:
        env = decode(msg.value if msg.value is not None else b"")
    except EventDecodeError as exc:
        print(
            f"dicom-adapter: warning: {tp.topic}[{tp.partition}]@{msg.offset} is not an event "
            f"({exc})",
            file=sys.stderr,
        )
        return None
    return render(tp.topic, tp.partition, msg.offset, env)


def _json_line(topic: str, partition: int, offset: int, env: Envelope) -> str:
    return orjson.dumps(to_dict(env)).decode()


def _when(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def human_line(topic: str, partition: int, offset: int, env: Envelope) -> str:
    """One event as ``time topic[partition]@offset type source fields`` without PHI."""
    head = f"{_when(env.time)} {topic}[{partition}]@{offset} {env.type} source={env.source}"
    fields = " ".join(f"{name}={value}" for name, value in short_fields(env))
    return f"{head} {fields}" if fields else head


def short_fields(env: Envelope) -> list[tuple[str, object]]:
    """The few fields an auditor scans for, per event type; never patient data."""
    data = env.data
    if isinstance(data, InstanceReceived):
        return [
            ("ae", data.called_ae),
            ("from", f"{data.calling_ae}@{data.calling_host}"),
            ("sop", data.sop_instance_uid),
            ("size", data.size),
        ]
    if isinstance(data, GroupClosed):
        return [
            ("ae", data.ae_title),
            ("group_by", data.group_by),
            ("reason", data.reason),
            ("instances", len(data.instances)),
            ("jobs", ",".join(job.job_id for job in data.jobs) or "-"),
        ]
    if isinstance(data, JobSubmitted):
        return [
            ("job", data.job_id),
            ("ae", data.ae_title),
            ("pipeline", data.pipeline_name),
            ("priority", data.priority),
            ("instances", len(data.instances)),
            ("attempt", data.attempt),
        ]
    if isinstance(data, JobFailed):
        return [
            ("job", data.job_id),
            ("attempt", data.attempt),
            ("will_retry", "yes" if data.will_retry else "no"),
            ("error", orjson.dumps(data.error).decode()),
        ]
    if isinstance(data, InstancesRemoved):
        return [
            ("ae", data.ae_title or "-"),
            ("instances", len(data.sop_instance_uids)),
            ("reason", data.reason),
            ("bytes", data.bytes_freed),
        ]
    return []
