"""``dicom-adapter events`` — print events from the adapter's topics, one per line.

The auditor's tool (DESIGN.md §3.1). It reads with :class:`streams.kafka.LogReader` (no
consumer group), so it never joins, rebalances or commits any consumer group. Without
``--follow`` it stops at the end offsets it saw when it started.
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
from aiokafka.structs import TopicPartition

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.redact import redact_envelope
from streams.errors import BrokerError
from streams.events import (
    ClockTick,
    Envelope,
    EventDecodeError,
    ExportCompleted,
    ExportFailed,
    ExportProgress,
    ExportRequested,
    GroupClosed,
    GroupsOpen,
    InstanceReceived,
    InstancesRemoved,
    JobFailed,
    JobSubmitted,
    to_dict,
)
from streams.kafka import END, Connection, KafkaConnection, LogReader, topic_names
from streams.kafka.reader import BEGINNING, Position

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``events`` to the CLI."""
    parser = subparsers.add_parser(
        "events",
        help="print events (instances, jobs and exports topics), one per line",
        description=(
            "Print the adapter's events one per line: time, position, type and short "
            "fields (no patient data), or the whole envelope with --json (patient "
            "identifiers hidden unless --show-phi). Reads without a consumer group, so it "
            "never disturbs the processors."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "--topic",
        choices=["instances", "jobs", "exports", "sources", "groups"],
        help=(
            "which topic (default: instances, jobs and exports; sources: heartbeats; "
            "groups: the open groups each processor says)"
        ),
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest event kept"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new events until Ctrl-C"
    )
    parser.add_argument("--json", action="store_true", help="print each envelope as JSON")
    parser.add_argument(
        "--ticks",
        action="store_true",
        help="also print the clock.tick records of the instances topic (the bus clock)",
    )
    parser.add_argument(
        "--show-phi",
        action="store_true",
        help="with --json: show patient identifiers (patient_id, tags, group keys)",
    )
    parser.set_defaults(handler=run_events)


def run_events(args: argparse.Namespace) -> int:
    """Handler of ``events``; returns the exit code."""
    config = resolve_kafka(args, load_settings(args))
    names = topic_names(config.kafka.topic_prefix)
    # Heartbeats (--topic sources) and ticks (--ticks) only when asked: they would drown
    # the events.
    default = [names.instances, names.jobs, names.exports]
    topics = [getattr(names, args.topic)] if args.topic else default
    render = human_line
    if args.json:
        render = _json_line if args.show_phi else _redacted_json_line
    kafka = KafkaConnection.of(config.kafka)
    asyncio.run(kafka.check_credentials())
    try:
        return asyncio.run(
            print_events(
                kafka,
                topics,
                from_beginning=args.from_beginning,
                follow=args.follow,
                render=render,
                out=sys.stdout,
                ticks=args.ticks,
            )
        )
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error; keep Python from complaining.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


async def print_events(
    kafka: Connection,
    topics: Iterable[str],
    *,
    from_beginning: bool,
    follow: bool,
    render: Callable[[str, int, int, Envelope], str],
    out: TextIO,
    ticks: bool = False,
) -> int:
    """Print the events of ``topics`` (``clock.tick`` records only with ``ticks``);
    returns the exit code."""
    async with LogReader(kafka, client_id="dicom-adapter-events") as reader:
        starts: dict[TopicPartition, Position] = {}
        missing: list[str] = []
        for topic in topics:
            partitions = await reader.partitions(topic)
            if not partitions:
                missing.append(topic)
            for p in partitions:
                starts[TopicPartition(topic, p)] = BEGINNING if from_beginning else END
        if not starts:
            raise BrokerError(
                f"none of the topics {', '.join(topics)} exist at {kafka}; "
                "check --kafka and kafka.topic_prefix"
            )
        for topic in missing:
            print(f"dicom-adapter: warning: no topic {topic} (yet)", file=sys.stderr)
        async for batch in reader.batches(starts, follow=follow, on_undecodable=_not_an_event):
            lines = [
                render(r.topic, r.partition, r.offset, r.envelope)
                for r in batch
                if ticks or not isinstance(r.envelope.data, ClockTick)
            ]
            if lines:
                out.write("\n".join(lines) + "\n")
            out.flush()
    return 0


def _not_an_event(tp: TopicPartition, offset: int, exc: EventDecodeError) -> None:
    print(
        f"dicom-adapter: warning: {tp.topic}[{tp.partition}]@{offset} is not an event ({exc})",
        file=sys.stderr,
    )


def _json_line(topic: str, partition: int, offset: int, env: Envelope) -> str:
    return orjson.dumps(to_dict(env)).decode()


def _redacted_json_line(topic: str, partition: int, offset: int, env: Envelope) -> str:
    return orjson.dumps(redact_envelope(to_dict(env))).decode()


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
    if isinstance(data, GroupsOpen):
        return [
            ("ae", data.ae_title),
            ("partition", f"{data.topic}[{data.partition}]"),
            ("owner", data.owner),
            ("open", len(data.groups) + data.truncated),
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
    if isinstance(data, ExportRequested):
        return [
            ("request", data.request_id),
            ("to", ",".join(data.destinations)),
            ("files", len(data.files)),
            ("job", data.job_id or "-"),
        ]
    if isinstance(data, ExportProgress | ExportCompleted | ExportFailed):
        sent = sum(1 for i in data.instances if i.status == "sent")
        out: list[tuple[str, object]] = [
            ("request", data.request_id),
            ("to", data.destination),
            ("attempt", data.attempt),
            ("sent", sent),
        ]
        if isinstance(data, ExportFailed):
            out.append(("will_retry", "yes" if data.will_retry else "no"))
        return out
    return []
