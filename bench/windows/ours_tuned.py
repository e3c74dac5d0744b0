"""``dicom-adapter process`` with a knob changed: bench-only what-ifs on the real runtime.

``--gc-freeze`` moves everything allocated at start-up (pydicom's data dictionary,
FastAPI, ...) out of the cyclic GC's reach; ``--gc-threshold A,B,C`` calls
``gc.set_threshold`` (fewer young collections, each of which also pays for the objects
open groups hold); ``--cprofile PATH`` runs it under ``cProfile`` and writes the stats
there when the process exits (the bench stops it with SIGTERM, a graceful shutdown).
Everything else is the runtime as shipped::

    python -m bench.windows.ours_tuned --gc-freeze -- --log-level WARNING process ...
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.windows.ours_tuned")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before running")
    parser.add_argument("--gc-threshold", help="gc.set_threshold(A, B, C)")
    parser.add_argument("--cprofile", metavar="PATH", help="write cProfile stats here on exit")
    parser.add_argument("cli", nargs=argparse.REMAINDER, help="-- then dicom-adapter arguments")
    args = parser.parse_args()
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    from processors.cli import COMMAND_MODULES
    from processors.cli import main as cli

    for name in COMMAND_MODULES:  # import everything the CLI will, so freeze sees it
        importlib.import_module(f"processors.commands.{name}")
    if args.gc_threshold:
        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    if not args.cprofile:
        return cli(cli_args)
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(cli, cli_args)
    finally:
        profiler.dump_stats(args.cprofile)


if __name__ == "__main__":
    sys.exit(main())
