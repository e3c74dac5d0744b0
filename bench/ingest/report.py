"""Medians, the Markdown tables and the ratios printed at the end of a bench run."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from bench.ingest.runner import Cell, RunResult

LABELS = {
    "ours": "DICOM Stream Adapter scp (Kafka acks=all)",
    "pyn-app": "pynetdicom bundled storescp",
    "dcmtk": "DCMTK storescp --fork",
    "orthanc": "Orthanc",
    "ours-stow": "DICOM Stream Adapter STOW-RS ¹ (Kafka acks=all)",
    "orthanc-stow": "Orthanc DICOMweb plugin STOW-RS ¹",
}


class Median:
    """Median figures of one cell over its verified runs."""

    def __init__(self, runs: list[RunResult]) -> None:
        self.runs = runs
        good = [r for r in runs if r.ok] or runs
        self.ok = all(r.ok for r in runs)
        self.verified = any(r.ok for r in runs)  # its figures come from verified runs
        self.rate = statistics.median(r.rate for r in good)
        self.mbps = statistics.median(r.mbps for r in good)
        self.cpu_ms = statistics.median(r.cpu_ms_per_instance for r in good)
        self.rss_mb = max(r.peak_rss_bytes for r in good) / 1e6
        self.foreign_s = max(r.foreign_cpu_s for r in good)
        brokers = [r.broker_cpu_s for r in good if r.broker_cpu_s is not None]
        self.broker_ms = statistics.median(brokers) * 1000 / good[0].instances if brokers else None
        self.spread = (min(r.rate for r in good), max(r.rate for r in good))


def medians(results: Iterable[RunResult]) -> dict[Cell, Median]:
    """Group runs by cell and take medians."""
    groups: dict[Cell, list[RunResult]] = defaultdict(list)
    for r in results:
        groups[r.cell].append(r)
    return {cell: Median(runs) for cell, runs in groups.items()}


def _cell(m: Median | None) -> str:
    if m is None:
        return "—"
    if not m.verified:
        return "failed (below)"  # a rate of runs that stored nothing would mislead
    flag = "" if m.ok else " ⚠"
    return f"{m.rate:.0f} · {m.mbps:.1f}{flag}"


def table(meds: dict[Cell, Median], corpus: str, nodelay: bool, receivers: list[str]) -> str:
    """One Markdown table: a row per receiver, inst/s · MB/s per parallelism, CPU, RSS."""
    parallels = sorted({c.parallel for c in meds if c.corpus == corpus and c.nodelay == nodelay})
    head = ["receiver", *(f"storescu x{p}" for p in parallels)]
    head += [f"rcv CPU ms/inst (x{p})" for p in parallels]
    head += ["peak RSS MB", "Kafka broker CPU ms/inst"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in receivers:
        row_meds = [meds.get(Cell(corpus, name, p, nodelay)) for p in parallels]
        if not any(row_meds):
            continue
        present = [m for m in row_meds if m is not None]
        cpu = [f"{m.cpu_ms:.2f}" if m is not None else "—" for m in row_meds]
        # Only ours talks to Kafka (C-STORE or STOW-RS); for the others the broker is idle.
        ours = name.startswith("ours")
        brokers = [m.broker_ms for m in present if m.broker_ms is not None and ours]
        broker = " / ".join(f"{b:.2f}" for b in brokers) if brokers else "—"
        rss = f"{max(m.rss_mb for m in present):.0f}"
        cells = [LABELS.get(name, name), *(_cell(m) for m in row_meds), *cpu, rss, broker]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(meds: dict[Cell, Median], corpus: str, nodelay: bool) -> list[str]:
    """``ours ÷ Orthanc`` and ``ours ÷ DCMTK`` per parallelism, as text lines."""
    out = []
    parallels = sorted({c.parallel for c in meds if c.corpus == corpus and c.nodelay == nodelay})
    for p in parallels:

        def verified(receiver: str, p: int = p) -> Median | None:
            m = meds.get(Cell(corpus, receiver, p, nodelay))
            return m if m is not None and m.verified else None  # no ratio from a failed run

        parts = []
        ours = verified("ours")
        for other, label in (("orthanc", "Orthanc"), ("dcmtk", "DCMTK"), ("pyn-app", "pyn-app")):
            m = verified(other)
            if ours is not None and m is not None:
                parts.append(f"ours ÷ {label} = {ours.rate / m.rate:.2f}")
        ours_web, orthanc_web = verified("ours-stow"), verified("orthanc-stow")
        if ours_web is not None and orthanc_web is not None:
            parts.append(f"STOW-RS ours ÷ Orthanc = {ours_web.rate / orthanc_web.rate:.2f}")
        if parts:
            out.append(f"{corpus}, storescu x{p}: " + ", ".join(parts))
    return out


def problems(results: Iterable[RunResult]) -> list[str]:
    """One line per run that did not verify."""
    return [
        f"{r.cell.corpus} {r.cell.receiver} x{r.cell.parallel} rep {r.rep}: {'; '.join(r.problems)}"
        for r in results
        if not r.ok
    ]


def load_lines(results: Iterable[RunResult]) -> list[str]:
    """Runs that saw CPU load from other processes (≥ 0.5 s during the send)."""
    return [
        f"{r.cell.corpus} {r.cell.receiver} x{r.cell.parallel} rep {r.rep}: "
        f"{r.foreign_cpu_s:.1f} s of other CPU during a {r.seconds:.1f} s send"
        for r in results
        if r.foreign_cpu_s >= 0.5
    ]
