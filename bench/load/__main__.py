"""``python -m bench.load`` — load rounds (see :mod:`bench.load`)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from bench.ingest.kafka import bench_kafka
from tests.helpers.load import Shape
from tests.helpers.loadcheck import ledger_problems, round_problems
from tests.helpers.loadrun import Bound, LoadRun, flatness, instance_files


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Concurrent-association load rounds into the real roles, memory per round.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--associations", type=int, default=25, help="concurrent associations (default 25)"
    )
    parser.add_argument(
        "--instances", type=int, default=400, help="instances per association (default 400)"
    )
    parser.add_argument("--series", type=int, default=4, help="series per study (default 4)")
    parser.add_argument("--patients", type=int, default=10, help="patients per round (default 10)")
    parser.add_argument("--kafka", help="broker HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--bound-mib", type=float, default=Bound().floor / 2**20, help="flatness floor, MiB"
    )
    parser.add_argument(
        "--bound-fraction", type=float, default=Bound().fraction, help="flatness fraction"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (role logs)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, bootstrap: str, work: Path) -> int:
    shape = Shape(args.rounds, args.associations, args.instances, args.series, args.patients)
    load = LoadRun(bootstrap, f"bench-load-{uuid.uuid4().hex[:8]}", work, shape)
    problems: list[str] = []
    every_sop: set[str] = set()
    try:
        await load.start()
        for number in range(1, shape.rounds + 1):
            result = await load.round(number)
            print(result.figures.line(), flush=True)
            problems += [f"round {number}: {p}" for p in round_problems(result, load.tail)]
            every_sop |= {sop for p in result.planned for sop in p.sops}
        await load.tail.read()
        problems += ledger_problems(load.tail, every_sop)
        if instance_files(load.storage):
            problems.append("instance files left under storage after reclaim")
        bound = Bound(args.bound_fraction, int(args.bound_mib * 2**20))
        problems += flatness([r.figures for r in load.rounds], bound)
        codes = await load.stop()
        problems += [f"{name} exited {code}" for name, code in codes.items() if code != 0]
    finally:
        await load.cluster.kill_all()
    for problem in problems:
        print(f"PROBLEM: {problem}", flush=True)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-load-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.kafka:
            return asyncio.run(run(args, args.kafka, work))
        with bench_kafka(work / "kafka") as kafka:
            print(f"broker: {kafka.description}", flush=True)
            return asyncio.run(run(args, kafka.bootstrap, work))
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
