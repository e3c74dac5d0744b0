"""``dicom-adapter groups [list|close GROUP_ID|watch]`` — open groups across replicas.

Read from ``<prefix>.groups``, where every processor says the open groups of the
partitions it owns (docs/operations.md), so the answer covers every replica. ``close``
writes a ``group.close_requested`` next to the group's instances: its owner closes it
with reason ``forced``; a group that is not open is a no-op (exit 0, says so).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from typing import Any, TextIO

import orjson

from processors.commands.jobs import duration, print_table, when
from processors.commands.kafka_args import add_kafka_arguments, load_settings, resolve_kafka
from processors.groups import GroupRow, row_fields
from processors.groups.bus import open_groups, request_close, wall_ms
from processors.groups.watch import watch
from streams.errors import UsageError
from streams.kafka import KafkaConnection, topic_names


def register(subparsers: Any) -> None:
    """Add ``groups`` to the CLI."""
    parser = subparsers.add_parser(
        "groups",
        help="list the open groups of every processor, close one now, or watch them live",
        description=(
            "Open groups as the processors say them on <prefix>.groups: id (stable while "
            "open), AE title, groupBy, instances, first and last received, deadline, owner. "
            "'close GROUP_ID' asks the owner to close the group now (reason forced); "
            "'watch' is a live view (q or Ctrl-C quits)."
        ),
    )
    add_kafka_arguments(parser)
    parser.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "close", "watch"],
        help="default: list",
    )
    parser.add_argument("group_id", nargs="?", metavar="GROUP_ID", help="for close")
    parser.add_argument("--ae", metavar="AE", help="only this AE title's groups")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per line")
    parser.add_argument("--reason", default="", help="close: why, for the audit trail")
    parser.add_argument(
        "--show-phi",
        action="store_true",
        help="with --json: show group keys (a Patient ID when grouping by patient)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="watch: refresh period"
    )
    parser.set_defaults(handler=run_groups)


def run_groups(args: argparse.Namespace) -> int:
    """Handler of ``groups``; returns the exit code."""
    if args.action == "close" and not args.group_id:
        raise UsageError("groups close needs a GROUP_ID (see 'dicom-adapter groups list')")
    if args.action != "close" and args.group_id:
        raise UsageError(f"groups {args.action} takes no GROUP_ID")
    if args.interval <= 0:
        raise UsageError(f"--interval must be positive, not {args.interval}")
    config = resolve_kafka(args, load_settings(args))
    kafka = KafkaConnection.of(config.kafka)
    asyncio.run(kafka.check_credentials())
    names = topic_names(config.kafka.topic_prefix)
    if args.action == "watch":
        return watch(kafka, names, ae_title=args.ae, interval_s=args.interval)
    if args.action == "close":
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        outcome = asyncio.run(
            request_close(kafka, names.groups, args.group_id, requested_by=who, reason=args.reason)
        )
        print(outcome.message(), file=sys.stdout)
        return 0
    found = asyncio.run(open_groups(kafka, names.groups, ae_title=args.ae))
    print_groups(found, sys.stdout, as_json=args.json, show_phi=args.show_phi)
    return 0


_COLUMNS = ("GROUP ID", "AE", "GROUP BY", "N", "FIRST", "LAST", "DUE IN", "OWNER")


def print_groups(found: list[GroupRow], out: TextIO, *, as_json: bool, show_phi: bool) -> None:
    """One group per line: JSON objects, or columns without patient data."""
    now = wall_ms()
    if as_json:
        for row in found:
            out.write(orjson.dumps(row_fields(row, now, show_phi=show_phi)).decode() + "\n")
        return
    print_table(_COLUMNS, [_row(r, now) for r in found], out)


def _row(row: GroupRow, now: int) -> tuple[str, ...]:
    g = row.group
    due = g.deadline - now
    due_text = (duration(due) if due >= 0 else "due") + (
        " max_age" if g.due_reason == "max_age" else ""
    )
    return (
        g.group_id,
        row.ae_title,
        g.group_by,
        str(g.instances),
        when(g.first_received_at),
        when(g.last_received_at),
        due_text,
        row.owner + (" (stale)" if row.stale else ""),
    )
