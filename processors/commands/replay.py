"""``dicom-adapter replay --config OTHER.yaml [--from TIME] [--to TIME] [--ae AE] [--diff]
[--json]`` -- what-if: the groups and jobs other settings would have formed.

It reads ``<prefix>.instances`` from the beginning with a group-less reader (it joins no
consumer group, commits nothing and writes nothing), runs the records through the same
AE Title Job Processors the ``process`` role runs, on the bus clock written in the log
(:mod:`processors.replay`), and prints the groups: closed ones with the jobs they would
get, and those still open at the end of the log. ``--diff`` compares them with the
``group.closed`` records of ``<prefix>.jobs``. Nothing is submitted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.commands.replay_view import write_json, write_text
from processors.replay import ReplayedGroup, diff_groups, replay_config
from streams.config import AdapterConfig
from streams.errors import UsageError
from streams.events import GroupClosed
from streams.kafka import KafkaConnection, Record, read_topic, topic_names

READ_TIMEOUT_S = 600.0


def register(subparsers: Any) -> None:
    """Add ``replay`` to the CLI."""
    parser = subparsers.add_parser(
        "replay",
        help="what-if: recompute groups and jobs from the instances log with other settings",
        description=(
            "Replay <prefix>.instances through the AE Title Job Processors of --config "
            "(timeout, groupBy, maxAge, pipelines), on the bus clock the log carries, and "
            "print the groups and jobs they form. Submits nothing and writes nothing; "
            "--diff compares them with the group.closed records of <prefix>.jobs."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "--from",
        dest="since",
        metavar="TIME",
        help="only groups whose first instance was appended at or after TIME "
        "(ISO 8601, e.g. 2026-12-06T08:00:00Z, or epoch ms)",
    )
    parser.add_argument(
        "--to",
        dest="until",
        metavar="TIME",
        help="only groups whose first instance was before TIME",
    )
    parser.add_argument(
        "--ae",
        action="append",
        metavar="AE",
        help="replay only this AE title (repeatable; default: every AE title of --config)",
    )
    parser.add_argument(
        "--diff", action="store_true", help="compare with the ledger: groups and moved instances"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--show-phi",
        action="store_true",
        help="with --json: show group keys that may identify a patient",
    )
    parser.set_defaults(handler=run_replay)


def parse_time(value: str | None, option: str) -> int | None:
    """Epoch ms of ``value`` (epoch ms, or ISO 8601; no zone means UTC); ``None`` for
    ``None``; :class:`UsageError` naming ``option`` otherwise."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not a time; use ISO 8601 such as 2026-12-06T08:00:00Z "
            "or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def select_ae_titles(config: AdapterConfig, wanted: Sequence[str] | None) -> AdapterConfig:
    """``config`` with only the ``wanted`` AE titles (all when ``None``); an AE title
    the config does not have is a :class:`UsageError` naming the ones it has."""
    if not wanted:
        return config
    have = [ae.ae_title for ae in config.scp.ae_titles]
    unknown = [ae for ae in wanted if ae not in have]
    if unknown:
        raise UsageError(
            f"--ae {', '.join(unknown)}: not an AE title of the config; it has "
            f"{', '.join(have) or 'none'}"
        )
    scp = config.scp.model_copy(
        update={"ae_titles": [ae for ae in config.scp.ae_titles if ae.ae_title in wanted]}
    )
    return config.model_copy(update={"scp": scp})


def in_range(first_ms: int, since: int | None, until: int | None) -> bool:
    """Whether a group whose first instance was appended at ``first_ms`` is asked for."""
    return (since is None or first_ms >= since) and (until is None or first_ms < until)


def ledger_groups(
    records: Sequence[Record], ae_titles: set[str], since: int | None, until: int | None
) -> list[GroupClosed]:
    """The ledger's groups with jobs of ``ae_titles`` read from the instances topic, in
    the range."""
    return [
        r.envelope.data
        for r in records
        if isinstance(r.envelope.data, GroupClosed)
        and r.envelope.data.jobs
        and not r.envelope.data.input_topic
        and r.envelope.data.ae_title in ae_titles
        and in_range(r.envelope.data.first_received_at, since, until)
    ]


def run_replay(args: argparse.Namespace) -> int:
    """Handler of ``replay``; returns the exit code."""
    if args.config is None:
        raise UsageError("replay needs --config FILE: the settings to replay the log with")
    since, until = parse_time(args.since, "--from"), parse_time(args.until, "--to")
    if since is not None and until is not None and until <= since:
        raise UsageError("--to must be later than --from")
    config = select_ae_titles(resolve_kafka(args, load_settings(args)), args.ae)
    if not config.scp.ae_titles:
        raise UsageError("the config has no scp.ae_titles: there is nothing to replay")
    kafka = KafkaConnection.of(config.kafka)
    names = topic_names(config.kafka.topic_prefix)
    asyncio.run(kafka.check_credentials())
    instances = asyncio.run(read_topic(kafka, names.instances, timeout_s=READ_TIMEOUT_S))
    # Every group closing would be logged at INFO: the answer is printed instead.
    logging.getLogger("processors.aetitle").setLevel(logging.WARNING)
    result = replay_config(config, instances)
    ae_titles = {ae.ae_title for ae in config.scp.ae_titles}
    groups: list[ReplayedGroup] = sorted(
        (g for g in result.groups if in_range(g.record.first_received_at, since, until)),
        key=lambda g: (g.record.first_received_at, g.record.inputs[0].partition),
    )
    diff = None
    if args.diff:
        jobs = asyncio.run(read_topic(kafka, names.jobs, timeout_s=READ_TIMEOUT_S))
        ledger = ledger_groups(jobs, ae_titles, since, until)
        diff = diff_groups(ledger, [g.record for g in groups], result.sop_at)
    summary = {
        "records": result.records,
        "closed": sum(1 for g in groups if not g.open),
        "open": sum(1 for g in groups if g.open),
        "ignored": sum(len(r.instances) for r in result.removals),
        "ae_titles": sorted(ae_titles),
        "from": since,
        "to": until,
    }
    if args.json:
        write_json(sys.stdout, groups, diff, summary, show_phi=args.show_phi)
    else:
        write_text(sys.stdout, groups, diff, summary)
    return 0
