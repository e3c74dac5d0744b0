"""``dicom-adapter process`` with a knob changed: bench-only what-ifs on the real runtime.

``--gc-freeze`` moves everything allocated at start-up (pydicom's data dictionary,
FastAPI, ...) out of the cyclic GC's reach; ``--gc-threshold A,B,C`` calls
``gc.set_threshold`` (fewer young collections, each of which also pays for the objects
open groups hold). Everything else is the runtime as shipped::

    python -m bench.windows.ours_tuned --gc-freeze -- --log-level WARNING process ...
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.windows.ours_tuned")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before running")
    parser.add_argument("--gc-threshold", help="gc.set_threshold(A, B, C)")
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
    return cli(cli_args)


if __name__ == "__main__":
    sys.exit(main())
