"""``dicom-adapter submit`` — run the submitter and the reclaimer alone (scale-out role).

Consumes ``<prefix>.jobs`` until SIGINT/SIGTERM: stages payloads, hands jobs to the
configured platform (``submitter.kind``), writes ``job.submitted``/``job.failed``, and
deletes the instance files of groups whose jobs are all submitted.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from processors.commands.kafka_args import add_kafka_arguments, load_role_settings, resolve_kafka
from processors.roles import serve, submit_role


def register(subparsers: Any) -> None:
    """Add ``submit`` to the CLI."""
    parser = subparsers.add_parser(
        "submit",
        help="run the job submitter and storage reclaimer until Ctrl-C",
        description=(
            "Submit the jobs of closed groups to the pipeline platform (submitter.kind: "
            "kafka or http), retry with backoff, dead-letter what keeps failing, and "
            "delete instance files once every job of their group is submitted. Runs "
            "until SIGINT or SIGTERM."
        ),
    )
    add_kafka_arguments(parser, role=True)
    parser.add_argument(
        "--no-reclaim",
        action="store_true",
        help="do not delete instance files or expire payloads (another process does)",
    )
    parser.set_defaults(handler=run_submit)


def run_submit(args: argparse.Namespace) -> int:
    """Handler of ``submit``; returns the exit code."""
    config = resolve_kafka(args, load_role_settings(args, processors=False))
    role = submit_role(reclaim=not args.no_reclaim)
    return asyncio.run(serve(config, {"submit": role}))
