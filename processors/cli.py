"""The ``dicom-adapter`` command line (DESIGN.md §3.1).

Each sub-command lives in :mod:`processors.commands` and exposes ``register(subparsers)``;
its handler returns an exit code: 0 ok, 2 bad usage or config, 1 runtime failure.
Errors reach the user as one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from processors.logs import configure_logging
from streams.errors import AdapterError

# Modules under processors.commands, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "config",
    "broker",
    "scp",
    "process",
    "events",
    "submit",
    "jobs",
    "replay",
    "studies",
    "groups",
    "export",
    "send",
)

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line error (its default prints usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"dicom-adapter: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dicom-adapter",
        description=(
            "DICOM Stream Adapter: receive DICOM over C-STORE, publish each instance to "
            "Kafka, group instances into pipeline jobs."
        ),
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="log line format"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"processors.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level, fmt=args.log_format)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except AdapterError as exc:
        print(f"dicom-adapter: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
