"""One measured run, and the matrix of runs the bench does.

A run: start the receiver fresh (own port, empty folder), take CPU readings of the
receiver tree, the broker and everything else, send with storescu, wait until the
receiver holds every instance (and, for ours, every event), read the CPU again, stop
the receiver and delete its folder. The page cache is synced before each run so one
run's write-back does not land in the next.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.ingest.adapter import AdapterScp
from bench.ingest.corpus import Corpus
from bench.ingest.orthanc import Orthanc
from bench.ingest.procstat import MemorySampler, cpu_snapshot, foreign_cpu_s, tree_cpu_s
from bench.ingest.receivers import DcmtkStorescp, PynetdicomApp, Receiver
from bench.ingest.sender import send
from bench.ingest.stow import AdapterStow, OrthancStow, stow
from streams.broker import free_port

log = logging.getLogger(__name__)

RECEIVERS = ("ours", "pyn-app", "dcmtk", "orthanc", "ours-stow", "orthanc-stow")
#: Receivers loaded over STOW-RS by dicomweb-client (the others by storescu).
STOW_RECEIVERS = ("ours-stow", "orthanc-stow")


@dataclass(frozen=True, slots=True)
class Cell:
    """What is measured: corpus, receiver, parallel associations, sender TCP_NODELAY."""

    corpus: str
    receiver: str
    parallel: int
    nodelay: bool


@dataclass
class RunResult:
    """One run's figures (``ok`` only if every instance was stored and verified)."""

    cell: Cell
    rep: int
    instances: int
    total_bytes: int
    seconds: float
    receiver_cpu_s: float
    broker_cpu_s: float | None
    foreign_cpu_s: float
    peak_rss_bytes: int
    stored: int
    events: int | None
    ok: bool
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Instances per second."""
        return self.instances / self.seconds

    @property
    def mbps(self) -> float:
        """MB (10^6 bytes of Part 10 files) per second."""
        return self.total_bytes / self.seconds / 1e6

    @property
    def cpu_ms_per_instance(self) -> float:
        """Receiver CPU per instance in ms."""
        return self.receiver_cpu_s * 1000 / self.instances

    def to_json(self) -> dict[str, object]:
        """Flat JSON-able record (raw results file)."""
        out = asdict(self)
        out.update(asdict(self.cell))
        del out["cell"]
        out.update(rate=self.rate, mbps=self.mbps, cpu_ms_per_instance=self.cpu_ms_per_instance)
        return out


@dataclass(frozen=True, slots=True)
class Setup:
    """Fixed context of a bench run."""

    work: Path
    bootstrap: str
    broker_pid: int | None


def make_receiver(name: str, workdir: Path, setup: Setup, *, nodelay: bool) -> Receiver:
    """A fresh receiver of kind ``name`` on free ports in ``workdir``."""
    port = free_port()
    if name == "ours":
        return AdapterScp(workdir, port, nodelay=nodelay, bootstrap=setup.bootstrap)
    if name == "pyn-app":
        return PynetdicomApp(workdir, port, nodelay=nodelay)
    if name == "dcmtk":
        return DcmtkStorescp(workdir, port, nodelay=nodelay)
    if name == "orthanc":
        return Orthanc(workdir, port, nodelay=nodelay, http_port=free_port())
    if name == "ours-stow":
        return AdapterStow(workdir, port, nodelay=nodelay, bootstrap=setup.bootstrap)
    if name == "orthanc-stow":
        return OrthancStow(workdir, port, nodelay=nodelay, http_port=free_port())
    raise ValueError(f"unknown receiver {name!r}; choose from {', '.join(RECEIVERS)}")


def run_once(cell: Cell, rep: int, corpus: Corpus, setup: Setup) -> RunResult:
    """Measure one cell once (see the module docstring)."""
    workdir = setup.work / f"{cell.corpus}-{cell.receiver}-x{cell.parallel}-r{rep}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.sync()
    receiver = make_receiver(cell.receiver, workdir, setup, nodelay=cell.nodelay)
    receiver.start()
    try:
        exclude = [os.getpid(), receiver.pid, *([setup.broker_pid] if setup.broker_pid else [])]
        sampler = MemorySampler(receiver.pid).start()
        cpu0 = tree_cpu_s(receiver.pid)
        broker0 = tree_cpu_s(setup.broker_pid) if setup.broker_pid else None
        snap0 = cpu_snapshot()
        if isinstance(receiver, AdapterStow | OrthancStow):
            sent = stow(
                receiver.url, list(corpus.files), parallel=cell.parallel, headers=receiver.headers
            )
        else:
            sent = send(corpus.files, receiver.port, parallel=cell.parallel, nodelay=cell.nodelay)
        foreign = foreign_cpu_s(snap0, cpu_snapshot(), exclude)
        check = receiver.settle(corpus)
        cpu1 = tree_cpu_s(receiver.pid)
        broker1 = tree_cpu_s(setup.broker_pid) if setup.broker_pid else None
        peak = sampler.stop()
    finally:
        receiver.stop()
    problems = list(check.problems)
    if not sent.ok:
        problems.append(f"storescu exit codes {sent.returncodes}: {' | '.join(sent.errors)}")
    if problems:
        log.warning("%s rep %d: %s\n%s", cell, rep, "; ".join(problems), receiver.tail())
    shutil.rmtree(workdir, ignore_errors=True)
    return RunResult(
        cell=cell,
        rep=rep,
        instances=len(corpus.files),
        total_bytes=corpus.total_bytes,
        seconds=sent.seconds,
        receiver_cpu_s=cpu1 - cpu0,
        broker_cpu_s=None if broker0 is None or broker1 is None else broker1 - broker0,
        foreign_cpu_s=foreign,
        peak_rss_bytes=peak.peak_bytes,
        stored=check.stored,
        events=check.events,
        ok=not problems,
        problems=problems,
    )


def matrix(
    corpora: list[str], receivers: list[str], parallels: list[int], nodelays: list[bool], reps: int
) -> Iterator[tuple[Cell, int]]:
    """Runs in the order done: receivers interleaved within each repetition."""
    for corpus in corpora:
        for nodelay in nodelays:
            for parallel in parallels:
                for rep in range(reps):
                    for receiver in receivers:
                        yield Cell(corpus, receiver, parallel, nodelay), rep


def run_matrix(
    cells: list[tuple[Cell, int]],
    setup: Setup,
    corpus_for: Callable[[Cell], Corpus],
    progress: Callable[[RunResult, int, int], None],
) -> list[RunResult]:
    """Run every cell; ``progress`` is told after each run."""
    results = []
    started = time.monotonic()
    for i, (cell, rep) in enumerate(cells, 1):
        result = run_once(cell, rep, corpus_for(cell), setup)
        results.append(result)
        progress(result, i, len(cells))
    log.info("%d runs in %.0f s", len(cells), time.monotonic() - started)
    return results
