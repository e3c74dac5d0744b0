"""Run the windows bench: ``python -m bench.windows --events 200000 --keys 10000,1000``.

See :mod:`bench.windows` for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.windows import data, inproc, ours_side, quix_side, report
from bench.windows.kafka_io import create_topics, produce
from bench.windows.sides import SideResult, SideSpec, run_side
from streams.broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[2]

# A side: its short tag and how to build its spec from (topic prefix, shared input topic).
SideFactory = tuple[str, Callable[[str, str], SideSpec]]

# Quix variants: (side name, collect a projection, exactly-once + changelog)
QUIX_VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "projection": ("quix", True, False),
    "whole": ("quix, whole events", False, False),
    "eos": ("quix, exactly-once + changelog", True, True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.windows",
        description="Session windows: our processor vs Quix Streams, same broker, same run.",
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per key count")
    parser.add_argument(
        "--keys", default="10000,1000", help="comma-separated key counts (default 10000,1000)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="sessions per key (default 2)")
    parser.add_argument("--partitions", type=int, default=1, help="input partitions (default 1)")
    parser.add_argument(
        "--replicas",
        default="1",
        metavar="N[,N...]",
        help="process counts of our runtime side, comma-separated, e.g. 1,2 (with "
        "--partitions 2): each runs as a side of its own, interleaved with the others; N "
        "copies of 'dicom-adapter process' share one config and consumer group, timed from "
        "the group Stable with N members; CPU = their sum, peak RSS = the largest; the "
        "report adds N's events/s over 1's. Quix and the shell always run one process "
        "(default 1)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of every side, interleaved (default 2)"
    )
    parser.add_argument(
        "--kafka",
        help="use this broker (HOST:PORT) instead of starting a dedicated Apache Kafka; "
        'KAFKA_BOOTSTRAP_SERVERS is ignored on purpose (--kafka "$KAFKA_BOOTSTRAP_SERVERS")',
    )
    parser.add_argument(
        "--ours",
        choices=["auto", "runtime", "shell", "both", "none"],
        default="auto",
        help="our side: the real runtime ('dicom-adapter process'), the bench-only shell, "
        "both, or none; auto = runtime if present, else shell",
    )
    parser.add_argument(
        "--what-if",
        default="",
        metavar="OPTIONS",
        help="also run the runtime through bench.windows.ours_tuned with these options, "
        "e.g. --what-if=--gc-freeze (default: no what-if)",
    )
    parser.add_argument(
        "--quix",
        default="projection,whole",
        help="Quix variants, comma-separated: projection (collect what our groups keep: "
        "SOP/study/series UID + uri; the baseline of the ratios), whole (collect whole "
        "events), eos (projection, exactly-once, changelog topics); '' for none "
        "(default projection,whole)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run the runtime from this source tree (e.g. a git worktree of an older "
        "commit), interleaved with ours: an A/B of two builds in one run",
    )
    parser.add_argument("--no-inproc", action="store_true", help="skip in-process figures")
    parser.add_argument(
        "--profile", action="store_true", help="run our side(s) under pyinstrument (see --work)"
    )
    parser.add_argument("--timeout", type=float, default=240, help="seconds per side (240)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--work", type=Path, help="keep broker data, logs, profiles here")
    args = parser.parse_args(argv)
    try:
        args.key_counts = [int(k) for k in args.keys.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--keys {args.keys!r}: give comma-separated whole numbers")
    args.quix_variants = [v.strip() for v in args.quix.split(",") if v.strip()]
    unknown = set(args.quix_variants) - set(QUIX_VARIANTS)
    if unknown:
        parser.error(f"--quix: unknown variant(s) {', '.join(sorted(unknown))}; "
                     f"use {', '.join(QUIX_VARIANTS)}")  # fmt: skip
    for keys in args.key_counts:
        try:
            data.validate(args.events, keys, args.rounds)
        except ValueError as exc:
            parser.error(str(exc))
    if args.partitions < 1 or args.repeat < 1:
        parser.error("--partitions and --repeat must be at least 1")
    try:
        args.replica_counts = list(dict.fromkeys(int(n) for n in args.replicas.split(",")))
    except ValueError:
        parser.error(f"--replicas {args.replicas!r}: give comma-separated whole numbers")
    if not all(1 <= n <= args.partitions for n in args.replica_counts):
        parser.error(
            f"--replicas {args.replicas}: each count from 1 to --partitions "
            f"({args.partitions}); a replica without a partition would only wait"
        )
    return args


async def bench(args: argparse.Namespace, work: Path) -> int:
    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
    broker: KafkaBroker | None = None
    bootstrap = args.kafka
    facts: list[str] = []
    # Replicas must join one generation: with the broker's usual delay of 0 the first
    # would be Stable alone and work until the next heartbeat before the group rebalances.
    replicated = max(args.replica_counts) > 1
    delay = {"group.initial.rebalance.delay.ms": "3000"} if replicated else {}
    if bootstrap is None:
        broker = KafkaBroker(work / "kafka", heap="1g", properties=delay)
        print(f"starting a dedicated {broker.description} ...", flush=True)
        await broker.start()
        bootstrap = broker.bootstrap_servers
        facts.append(f"Broker: dedicated {broker.description}, 1 node, same machine, -Xmx1g")
        if replicated:
            facts.append(
                "group.initial.rebalance.delay.ms=3000 (Kafka's default; 0 otherwise here) so "
                "replicas join one generation: every side's start-up takes 3 s longer"
            )
    else:
        facts.append(f"Broker: existing at {bootstrap}")
        if replicated:
            facts.append("Replicas join one generation only if that broker delays a new "
                         "group's first rebalance (group.initial.rebalance.delay.ms)")  # fmt: skip
    load_before = os.getloadavg()
    try:
        broker_pid = broker.pid if broker is not None else None
        runs, memory = await _run_all(
            args, bootstrap, run_id, work, facts=facts, broker_pid=broker_pid
        )
    finally:
        if broker is not None:
            await broker.stop()
    load_after = os.getloadavg()
    before, after = ("/".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    facts.append(f"Load average (1/5/15 min) before the run: {before}, after: {after}")
    print()
    print(report.side_details(runs))
    print()
    print(report.markdown(runs, memory))
    print()
    print("\n".join(f"- {fact}" for fact in report.machine_facts(facts)))
    if args.json:
        payload = {
            "runs": [asdict(r) for r in runs],
            "memory": [asdict(m) for m in memory],
            "facts": report.machine_facts(facts),
            "argv": sys.argv,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=list), encoding="utf-8")
    ok = all(side.complete for run in runs for side in run.sides)
    return 0 if ok else 1


async def _run_all(
    args: argparse.Namespace,
    bootstrap: str,
    run_id: str,
    work: Path,
    *,
    facts: list[str],
    broker_pid: int | None,
) -> tuple[list[report.KeysRun], list[inproc.Memory]]:
    quix_python = None
    if args.quix_variants:
        quix_python = quix_side.venv_python()
        facts.append(quix_side.quix_version(quix_python))
    factories = _sides(args, bootstrap, work, quix_python)
    memory: list[inproc.Memory] = []
    if not args.no_inproc:
        print("in-process: memory per open instance/group ...", flush=True)
        memory = [inproc.open_memory(100_000, 10_000), inproc.open_memory(10_000, 10_000)]
    runs: list[report.KeysRun] = []
    for keys in args.key_counts:
        dataset = data.generate(args.events, keys, rounds=args.rounds)
        rates: list[inproc.Rate] = []
        if not args.no_inproc:
            print(f"in-process: throughput, {keys} keys ...", flush=True)
            rates = inproc.throughput(dataset, args.partitions)
        sides: list[SideResult] = []
        produce_s: list[float] = []
        produced: set[str] = set()
        for rep in range(args.repeat):
            shared = f"bw-{run_id}-k{keys}-r{rep}.instances"
            for tag, make in factories:
                # The runtime's consumer group, commits and jobs ledger are named after its
                # topic prefix, so each of its runs gets fresh topics; the other sides (own
                # consumer group and output topic) share one input topic per repeat.
                prefix = f"bw-{run_id}-k{keys}-{tag}-r{rep}"
                spec = make(prefix, shared)
                await create_topics(
                    bootstrap, [spec.input_topic], [spec.output_topic], args.partitions
                )
                if spec.input_topic not in produced:
                    start = time.perf_counter()
                    # the runtime closes groups by the clock ticks in its log
                    ticked = tag.startswith("ours")
                    events = dataset.with_ticks(args.partitions) if ticked else dataset.events
                    await produce(bootstrap, spec.input_topic, events)
                    await produce(bootstrap, spec.input_topic, dataset.sentinels(args.partitions))
                    produce_s.append(time.perf_counter() - start)
                    produced.add(spec.input_topic)
                print(f"running {spec.name} ({keys} keys, run {rep + 1}) ...", flush=True)
                await asyncio.sleep(2)  # let the broker flush the produced log first
                result = await run_side(
                    spec,
                    bootstrap,
                    events=dataset.counted_events,
                    expected_groups=dataset.expected_groups,
                    log_path=work / "logs" / f"{prefix}.log",
                    timeout_s=args.timeout,
                    broker_pid=broker_pid,
                )
                print(
                    f"  {report.rate_text(result.rate_from_stable)} events/s, "
                    f"{result.groups}/{result.expected_groups} groups",
                    flush=True,
                )
                sides.append(result)
        runs.append(
            report.KeysRun(
                keys,
                dataset.counted_events,
                dataset.expected_groups,
                sum(produce_s) / max(len(produce_s), 1),
                rates,
                sides,
            )
        )
    return runs, memory


def _sides(
    args: argparse.Namespace, bootstrap: str, work: Path, quix_python: Path | None
) -> list[SideFactory]:
    factories: list[SideFactory] = []
    cwd = str(ROOT)

    def profile_path(prefix: str) -> str | None:
        return str(work / f"{prefix}.profile.txt") if args.profile else None

    def runtime(
        tuned: tuple[str, ...], root: str = cwd, name: str | None = None, replicas: int = 1
    ) -> Callable[[str, str], SideSpec]:
        def make(prefix: str, _shared: str) -> SideSpec:
            config = work / f"{prefix}.config.json"
            ours_side.write_config(
                config,
                bootstrap=bootstrap,
                prefix=prefix,
                partitions=args.partitions,
                storage=work / "storage",
            )
            return ours_side.runtime_spec(
                bootstrap,
                config=config,
                prefix=prefix,
                cwd=root,
                profile=profile_path(prefix),
                tuned=tuned,
                name=name,
                replicas=replicas,
            )

        return make

    def shell(prefix: str, _shared: str) -> SideSpec:
        return ours_side.shell_spec(
            bootstrap, prefix=prefix, group_id=f"{prefix}.shell", cwd=cwd,
            profile=profile_path(prefix),
        )  # fmt: skip

    for mode in _ours_modes(args.ours):
        if mode != "runtime":
            factories.append(("shell", shell))
            continue
        # every build and what-if of the runtime at every replica count
        for n in args.replica_counts:
            x = "" if n == 1 else f"-x{n}"
            factories.append((f"ours{x}", runtime((), replicas=n)))
            if args.baseline is not None:
                base = str(args.baseline.resolve())
                factories.append((f"ours-b{x}", runtime((), base, "ours (baseline)", n)))
            if args.what_if.strip():
                what_if = tuple(args.what_if.split())
                factories.append((f"ours-w{x}", runtime(what_if, replicas=n)))
    if quix_python is not None:

        def quix(variant: str) -> Callable[[str, str], SideSpec]:
            name, project, eos = QUIX_VARIANTS[variant]

            def make(prefix: str, shared: str) -> SideSpec:
                return quix_side.quix_spec(
                    quix_python,
                    bootstrap,
                    input_topic=shared,
                    output_topic=f"{prefix}.out",
                    group_id=f"{prefix}.quix",
                    state_dir=work / "quix-state" / prefix,
                    gap_ms=5000,
                    exactly_once=eos,
                    changelog=eos,
                    name=name,
                    project=project,
                )

            return make

        for variant in args.quix_variants:
            factories.append((f"quix-{variant}", quix(variant)))
    return factories


def _ours_modes(choice: str) -> list[str]:
    if choice == "none":
        return []
    present = ours_side.runtime_available()
    if choice == "auto":
        return ["runtime"] if present else ["shell"]
    if choice in ("runtime", "both") and not present:
        raise SystemExit(
            "bench.windows: the processor runtime ('dicom-adapter process') is not there yet; "
            "use --ours shell"
        )
    return ["runtime", "shell"] if choice == "both" else [choice]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka warns about retried produce requests while a fresh topic elects its leader
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-windows-"))
    work.mkdir(parents=True, exist_ok=True)
    code = 1
    try:
        code = asyncio.run(bench(args, work))
    except KeyboardInterrupt:
        code = 130
    finally:
        if args.work is None and code == 0 and os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and state kept in {work}")
    return code


if __name__ == "__main__":
    sys.exit(main())
