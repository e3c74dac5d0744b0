"""``python -m bench.soak --scale 10k`` -- see :mod:`bench.soak`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from bench.soak.history import AE, PER_GROUP, disk_used, write_history
from bench.soak.roles import SoakRoles, Startup, write_config
from streams.broker import KafkaBroker

CHECKPOINTS = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument(
        "--scale", choices=list(CHECKPOINTS), default="10k", help="last checkpoint (events)"
    )
    parser.add_argument("--partitions", type=int, default=6, help="partitions (default 6)")
    parser.add_argument("--kafka", help="broker HOST:PORT (default: a dedicated one)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def _line(events: int, jobs: int, s: Startup, disk: tuple[int, int, int], base: int) -> str:
    used, folders, files = disk
    return (
        f"| {events:,} | {jobs:,} | {s.process_ready_s:.1f} | {s.submit_ready_s:.1f} | "
        f"{s.submit_history_s:.1f} ({s.history_records:,} records) | "
        f"{s.process_rss / MIB:.0f} | {s.submit_rss / MIB:.0f} | {base / MIB:.2f} -> "
        f"{used / MIB:.2f} ({folders} folders, {files} files) |"
    )


async def soak(args: argparse.Namespace, bootstrap: str, work: Path) -> list[dict[str, object]]:
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    storage = work / "storage"
    config = write_config(
        work / "soak.yaml", prefix=prefix, storage=storage, partitions=args.partitions, ae=AE
    )
    baseline, _, _ = disk_used(storage)
    roles = SoakRoles(bootstrap, config, work, prefix, AE)
    results: list[dict[str, object]] = []
    groups_done = 0
    print(
        "| events | jobs | process ready s | submit ready s | submit history read s | "
        "process RSS MiB | submit RSS MiB | storage MiB (empty -> after retention, left) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        flush=True,
    )
    for label, events in CHECKPOINTS.items():
        groups = events // PER_GROUP - groups_done
        started = time.monotonic()
        await roles.start()  # they create the topics, as in production
        await write_history(bootstrap, f"{prefix}.instances", storage, groups_done, groups)
        groups_done += groups
        await roles.drain(deadline_s=max(600.0, groups * 0.2))  # jobs go one at a time
        await roles.stop()
        drained_s = time.monotonic() - started
        startup = await roles.cold_start(args.partitions)
        disk = disk_used(storage)
        print(_line(events, groups_done, startup, disk, baseline), flush=True)
        results.append(
            {
                "checkpoint": label,
                "events": events,
                "jobs": groups_done,
                "write_and_drain_s": round(drained_s, 1),
                **asdict(startup),
                "storage_bytes": disk[0],
                "storage_folders_left": disk[1],
                "storage_files_left": disk[2],
                "storage_bytes_empty": baseline,
            }
        )
        if label == args.scale:
            break
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    broker: KafkaBroker | None = None
    bootstrap = args.kafka or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        if not bootstrap:
            broker = KafkaBroker(work / "kafka")
            asyncio.run(broker.start())
            bootstrap = broker.bootstrap_servers
        results = asyncio.run(soak(args, bootstrap, work))
    finally:
        if broker is not None:
            asyncio.run(broker.stop())
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
        f"{load_after[2]:.2f}"
    )
    if args.json:
        print(
            json.dumps({"results": results, "load_before": load_before, "load_after": load_after})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
