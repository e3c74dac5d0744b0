"""``dicom-adapter export`` — the export role, and its operator's tools.

* ``export`` (no action): run the export role until SIGINT/SIGTERM (docs/export.md).
* ``export list|show REQUEST_ID``: exports as the ledger tells them, rebuilt by replaying
  ``<prefix>.exports`` without a consumer group (like ``jobs``).
* ``export retry REQUEST_ID [--destination N]``: write ``export.retry_requested`` for a
  dead-lettered export; its exporter gives it another round.
* ``export send --to NAME [--job JOB_ID] FILE_OR_DIR...``: stage the files under
  ``<storage>/exports/<request_id>/`` and write ``export.requested``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from processors.commands.jobs import print_fields, print_history, print_table, when
from processors.commands.kafka_args import (
    add_kafka_arguments,
    load_role_settings,
    load_settings,
    resolve_kafka,
)
from processors.export import ExportLedger, ExportState, fold
from processors.export.requests import (
    Upload,
    check_destinations,
    identify,
    load_request,
    request_id_of,
    stage,
    write_request,
)
from processors.export.views import describe, detail, summary
from processors.roles import export_role, serve
from streams.errors import UsageError
from streams.events import ExportRequested, ExportRetryRequested, envelope
from streams.kafka import Connection, EventPublisher, KafkaConnection, read_topic, topic_names

STATES = ("pending", "failed", "dead", "completed")


def register(subparsers: Any) -> None:
    """Add ``export`` (the role) and its actions to the CLI."""
    parser = subparsers.add_parser(
        "export",
        help="run the export role; or list, show, retry or send exports",
        description=(
            "Without an action: run the export role (deliver export requests to "
            "export.destinations with C-STORE or STOW-RS) until Ctrl-C. The actions "
            "replay <prefix>.exports (list, show), re-open a dead-lettered export (retry) "
            "or request an export of local DICOM files (send)."
        ),
    )
    add_kafka_arguments(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    # --kafka/--config may come before or after the action: SUPPRESS keeps the action's
    # parser from overwriting a value given before it with its own default.
    quiet = {"argument_default": argparse.SUPPRESS}
    listing = actions.add_parser("list", help="every export, oldest first", **quiet)
    add_kafka_arguments(listing)
    listing.add_argument("--json", action="store_true", default=False, help="one JSON per line")
    listing.add_argument("--state", choices=STATES, default=None, help="only this state")
    show = actions.add_parser("show", help="one request: destinations, files, history", **quiet)
    add_kafka_arguments(show)
    show.add_argument("request_id", metavar="REQUEST_ID")
    show.add_argument("--json", action="store_true", default=False, help="JSON, one per line")
    retry = actions.add_parser("retry", help="re-open a dead-lettered export", **quiet)
    add_kafka_arguments(retry)
    retry.add_argument("request_id", metavar="REQUEST_ID")
    retry.add_argument("--destination", default="", help="only this destination")
    retry.add_argument("--reason", default="", help="why, for the audit trail")
    send = actions.add_parser("send", help="export local DICOM files", **quiet)
    add_kafka_arguments(send)
    send.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", type=Path)
    send.add_argument(
        "--to", action="append", required=True, metavar="NAME", help="a destination (repeat)"
    )
    send.add_argument("--job", default="", metavar="JOB_ID", help="the job these results are of")
    send.add_argument("--request-id", default="", help="the request id (idempotency)")
    send.add_argument("--reason", default="", help="why, for the audit trail")
    parser.set_defaults(handler=run_export, action=None)


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``export``; returns the exit code."""
    if args.action is None:
        config = resolve_kafka(args, load_role_settings(args, processors=False))
        return asyncio.run(serve(config, {"export": export_role}))
    config = resolve_kafka(args, load_settings(args))
    kafka = KafkaConnection.of(config.kafka)
    topic = topic_names(config.kafka.topic_prefix).exports
    out = sys.stdout
    if args.action == "send":
        return _send(args, config, kafka, topic, out)
    if args.action == "list":
        ledger = asyncio.run(load_ledger(kafka, topic))
        print_list(ledger, out, as_json=args.json, state=args.state)
        return 0
    request_id = args.request_id
    states = asyncio.run(load_request(kafka, topic, request_id))
    if not states:
        raise UsageError(
            f"no export request {request_id} in {topic}; see 'dicom-adapter export list'"
        )
    if args.action == "show":
        print_request(states, out, as_json=args.json)
        return 0
    return _retry(args, kafka, topic, states, out)


def _retry(
    args: argparse.Namespace,
    kafka: Connection,
    topic: str,
    states: Sequence[ExportState],
    out: TextIO,
) -> int:
    chosen = [s for s in states if not args.destination or s.destination == args.destination]
    if not chosen:
        names = ", ".join(s.destination for s in states)
        raise UsageError(
            f"request {states[0].request_id} has no destination {args.destination!r}; "
            f"it has {names}"
        )
    dead = [s for s in chosen if s.status == "dead"]
    if not dead:
        listed = ", ".join(f"{s.destination} is {describe(s)}" for s in chosen)
        raise UsageError(f"nothing to retry: {listed}; only dead-lettered exports can be retried")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    record = ExportRetryRequested(states[0].request_id, args.destination, who, args.reason)
    asyncio.run(_write(kafka, topic, states[0].request_id, record))
    names = ", ".join(s.destination for s in dead)
    print(
        f"retry requested for export {states[0].request_id} to {names}; follow it with "
        f"'dicom-adapter export show {states[0].request_id}'",
        file=out,
    )
    return 0


def _send(args: argparse.Namespace, config: Any, kafka: Connection, topic: str, out: TextIO) -> int:
    destinations = check_destinations(config, args.to)
    request_id = request_id_of(args.request_id or None)
    uploads = [Upload(str(p), path=p) for p in expand(args.paths)]
    probes = identify(uploads)
    storage = Path(os.path.abspath(config.storage))
    files = stage(storage, request_id, probes)
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    event = ExportRequested(request_id, destinations, files, args.job, who, args.reason)
    asyncio.run(_publish_request(kafka, topic, event, config.adapter_id))
    print(
        f"export {request_id} requested: {len(files)} file(s) to {', '.join(destinations)}; "
        f"follow it with 'dicom-adapter export show {request_id}'",
        file=out,
    )
    return 0


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given and every file below given folders (sorted); a missing path is a
    usage error."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return found


async def _publish_request(
    kafka: Connection, topic: str, event: ExportRequested, source: str
) -> None:
    async with EventPublisher(kafka, client_id="dicom-adapter-export") as publisher:
        await write_request(publisher, topic, event, source=source)


async def _write(kafka: Connection, topic: str, key: str, record: ExportRetryRequested) -> None:
    env = envelope(record, source="dicom-adapter-export", time_ms=int(time.time() * 1000))
    async with EventPublisher(kafka, client_id="dicom-adapter-export") as publisher:
        await publisher.publish(topic, key, env)


async def load_ledger(kafka: Connection, topic: str) -> ExportLedger:
    """Read ``topic`` from the beginning and fold it."""
    records = await read_topic(kafka, topic)
    return fold((r.key or "", r.envelope) for r in records)


_COLUMNS = ("REQUEST ID", "DESTINATION", "STATE", "ATT", "SENT", "JOB", "REQUESTED", "DONE")


def print_list(ledger: ExportLedger, out: TextIO, *, as_json: bool, state: str | None) -> None:
    """Every (request, destination), oldest first."""
    states = sorted(ledger, key=lambda s: (s.requested_at, s.request_id, s.destination))
    if state:
        states = [s for s in states if s.status == state]
    if as_json:
        for s in states:
            out.write(orjson.dumps(summary(s)).decode() + "\n")
        return
    rows = [
        (
            s.request_id,
            s.destination,
            describe(s),
            str(s.attempts),
            f"{s.delivered}/{len(s.files)}",
            s.job_id or "-",
            when(s.requested_at),
            when(s.completed_at),
        )
        for s in states
    ]
    print_table(_COLUMNS, rows, out)


def print_request(states: Sequence[ExportState], out: TextIO, *, as_json: bool) -> None:
    """Every destination of one request: fields, files and history."""
    for state in states:
        if as_json:
            out.write(orjson.dumps(detail(state)).decode() + "\n")
            continue
        print_fields(
            [
                ("request", state.request_id),
                ("destination", state.destination),
                ("state", describe(state)),
                ("job", state.job_id or "-"),
                ("requested by", state.requested_by or "-"),
                ("requested", when(state.requested_at)),
                ("attempts", str(state.attempts)),
                ("delivered", f"{state.delivered} of {len(state.files)}"),
                ("next retry", when(state.retry_at)),
                ("completed", when(state.completed_at)),
                ("last error", state.last_error or "-"),
            ],
            out,
        )
        view = detail(state)["files"]
        rows = [(f["sop_instance_uid"] or "-", f["status"], f["error"] or "") for f in view]
        print_table(("SOP INSTANCE UID", "STATUS", "ERROR"), rows, out)
        print_history(state.history, out)
