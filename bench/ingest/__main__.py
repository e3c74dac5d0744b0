"""``python -m bench.ingest`` — the ingest benchmark (see :mod:`bench.ingest`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest.corpus import SPECS, Corpus, load_corpus
from bench.ingest.facts import facts
from bench.ingest.kafka import bench_kafka
from bench.ingest.orthanc import orthanc_installed
from bench.ingest.report import load_lines, medians, problems, ratios, table
from bench.ingest.runner import (
    RECEIVERS,
    STOW_RECEIVERS,
    Cell,
    RunResult,
    Setup,
    matrix,
    run_matrix,
)
from bench.ingest.stow import BATCH
from streams.storage.space import SpaceGuard

log = logging.getLogger("bench.ingest")

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "dicom-adapter/bench-ingest"
)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Ingest benchmark: storescu into our SCP, pynetdicom, DCMTK, Orthanc; "
            "dicomweb-client (STOW-RS) into ours and Orthanc's DICOMweb plugin"
        ),
    )
    p.add_argument("--reps", type=int, default=3, help="runs per cell; the median is reported")
    p.add_argument("--corpus", type=_csv, default=["big", "small"], help="big,small")
    p.add_argument("--receivers", type=_csv, default=list(RECEIVERS), help=",".join(RECEIVERS))
    p.add_argument("--parallel", type=_csv, default=["1", "4"], help="storescu processes: 1,4")
    p.add_argument(
        "--no-nodelay",
        action="store_true",
        help="also run 'as shipped' (no TCP_NODELAY on either end) on a subset",
    )
    p.add_argument(
        "--as-shipped-count",
        type=int,
        default=100,
        help="instances per corpus in the as-shipped runs (default 100)",
    )
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="corpus cache folder")
    p.add_argument("--work", type=Path, default=None, help="scratch folder for received files")
    p.add_argument(
        "--out", type=Path, default=None, help="results folder (default: <work>/results)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the tables. Exit 1 if a run did not verify."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("aiokafka", "streams.broker", "dicomweb_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    receivers = [r for r in args.receivers if not r.startswith("orthanc") or orthanc_installed()]
    if "orthanc" in args.receivers and "orthanc" not in receivers:
        log.warning("Orthanc is not installed (/usr/sbin/Orthanc); its rows are left out")
    unknown = [r for r in receivers if r not in RECEIVERS]
    if unknown or any(c not in SPECS for c in args.corpus):
        print(f"unknown receiver or corpus: {unknown or args.corpus}", file=sys.stderr)
        return 2
    corpora = {name: load_corpus(SPECS[name], args.cache) for name in args.corpus}
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ingest-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    if "ours" in receivers and not SpaceGuard(work).available():
        # Our SCP would refuse every instance (0xA700) and the runs store nothing.
        print(
            f"{work}: less free disk than the SCP's default watermark keeps "
            "(15 % and 5 GB); free space there or pass --work on another disk",
            file=sys.stderr,
        )
        return 2
    parallels = [int(p) for p in args.parallel]
    cells = list(matrix(args.corpus, receivers, parallels, [True], args.reps))
    if args.no_nodelay:
        storescu_only = [r for r in receivers if r not in STOW_RECEIVERS]
        cells += list(matrix(args.corpus, storescu_only, [1], [False], 1))

    def corpus_for(cell: Cell) -> Corpus:
        whole = corpora[cell.corpus]
        return whole if cell.nodelay else whole.subset(args.as_shipped_count)

    def progress(result: RunResult, i: int, n: int) -> None:
        c = result.cell
        log.info(
            "[%d/%d] %s %s x%d%s rep %d: %.0f inst/s, %.1f MB/s, %.2f ms CPU/inst%s",
            i,
            n,
            c.corpus,
            c.receiver,
            c.parallel,
            "" if c.nodelay else " as-shipped",
            result.rep,
            result.rate,
            result.mbps,
            result.cpu_ms_per_instance,
            "" if result.ok else "  NOT VERIFIED: " + "; ".join(result.problems),
        )

    started = time.monotonic()
    with bench_kafka(work / "kafka") as kafka:
        log.info("Kafka: %s at %s", kafka.description, kafka.bootstrap)
        setup = Setup(work, kafka.bootstrap, kafka.pid)
        machine = facts(work, kafka.description)
        results = run_matrix(cells, setup, corpus_for, progress)
    elapsed = time.monotonic() - started
    text = render(
        results, corpora=corpora, receivers=receivers, machine=machine, args=args, elapsed=elapsed
    )
    print(text)
    out = args.out or work / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    raw = {"facts": machine, "argv": sys.argv, "runs": [r.to_json() for r in results]}
    (out / "raw.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    log.info("results in %s (%.0f s)", out, elapsed)
    return 0 if all(r.ok for r in results) else 1


def render(
    results: list[RunResult],
    *,
    corpora: dict[str, Corpus],
    receivers: list[str],
    machine: dict[str, str],
    args: argparse.Namespace,
    elapsed: float,
) -> str:
    """The Markdown report: facts, one table per corpus (and as-shipped), ratios."""
    meds = medians(results)
    out = [f"Command: `python -m bench.ingest {' '.join(sys.argv[1:])}` ({elapsed / 60:.1f} min)"]
    out += ["", *(f"- {k}: {v}" for k, v in machine.items()), ""]
    for nodelay in (True, False):
        for name, corpus in corpora.items():
            if not any(c.corpus == name and c.nodelay == nodelay for c in meds):
                continue
            n = len(corpus.files) if nodelay else len(corpus.subset(args.as_shipped_count).files)
            mode = "TCP_NODELAY=1 on both ends" if nodelay else "as shipped, no TCP_NODELAY"
            reps = args.reps if nodelay else 1
            out += [
                f"**{name}: {n} x {corpus.mean_bytes / 1e3:.1f} kB, {mode}, median of {reps}** "
                "(inst/s · MB/s)",
                "",
                table(meds, name, nodelay, receivers),
                "",
            ]
    out += [line for name in corpora for line in ratios(meds, name, True)]
    if any(r in STOW_RECEIVERS for r in receivers):
        out += [
            "",
            f"¹ STOW-RS rows: dicomweb-client threads instead of storescu processes (the "
            f"columns' x1/x4), {BATCH} instances per request.",
        ]
    bad = problems(results)
    if bad:
        out += ["", "Runs that did not verify:", *(f"- {b}" for b in bad)]
    loaded = load_lines(results)
    if loaded:
        out += ["", "Runs with CPU load from other processes:", *(f"- {x}" for x in loaded)]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
