"""Tables and machine facts for the windows bench (plain text and Markdown)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from bench.windows.inproc import Memory, Rate
from bench.windows.sides import SideResult


@dataclass(frozen=True, slots=True)
class KeysRun:
    """Everything measured for one key count."""

    keys: int
    events: int
    groups: int
    produce_s: float
    inproc: Sequence[Rate]
    sides: Sequence[SideResult]


def rate_text(value: float | None) -> str:
    """``12,345`` or ``-``."""
    return f"{value:,.0f}" if value is not None else "-"


def _per_event_us(seconds: float | None, events: int) -> float | None:
    return seconds / events * 1e6 if seconds is not None and events else None


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return fmt.format(value) if value is not None else "-"


def _by_name(sides: Sequence[SideResult]) -> dict[str, list[SideResult]]:
    out: dict[str, list[SideResult]] = {}
    for side in sides:
        out.setdefault(side.name, []).append(side)
    return out


def _valid(results: Sequence[SideResult]) -> list[SideResult]:
    """Runs with every group whose replicas (if any) joined in one go and stayed."""
    return [r for r in results if r.complete and r.clean_start and r.rate_from_stable]


def _best(results: Sequence[SideResult]) -> SideResult:
    """The fastest run, among the valid ones if there are any (see :func:`_valid`)."""
    return max(_valid(results) or results, key=lambda r: r.rate_from_stable or 0.0)


def markdown(runs: Sequence[KeysRun], memory: Sequence[Memory], baseline: str = "quix") -> str:
    """The result tables as Markdown (best of the repeated runs, every run listed)."""
    lines = [
        "| keys | side | all groups | events/s, best | every run | events/s incl. start-up "
        "| CPU µs/event | broker CPU µs/event | peak RSS MB | vs Quix |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        named = _by_name(run.sides)
        base = _best(named[baseline]).rate_from_stable if baseline in named else None
        for name, results in named.items():
            best = _best(results)
            ok = sum(r.complete for r in results)
            every = ", ".join(
                rate_text(r.rate_from_stable) + ("" if r.clean_start else " (split)")
                for r in results
            )
            cpu = min((r.cpu_s for r in results if r.cpu_s is not None), default=None)
            bcpu = min((r.broker_cpu_s for r in results if r.broker_cpu_s is not None),
                       default=None)  # fmt: skip
            rss = max((r.peak_rss_kb for r in results if r.peak_rss_kb), default=None)
            ratio = (
                f"{best.rate_from_stable / base:.1f}x" if best.rate_from_stable and base else "-"
            )
            lines.append(
                f"| {run.keys:,} | {name} | {ok}/{len(results)} runs "
                f"| {rate_text(best.rate_from_stable)} | {every} "
                f"| {rate_text(best.rate_from_spawn)} "
                f"| {_num(_per_event_us(cpu, run.events), '{:.0f}')} "
                f"| {_num(_per_event_us(bcpu, run.events), '{:.0f}')} "
                f"| {_num(rss / 1024 if rss else None)} | {ratio} |"
            )
    lines += scale_out(runs)
    if any(run.inproc for run in runs):
        lines += [
            "",
            "| keys | in-process (no Kafka, virtual time, event-time closing) | events/s |",
            "|---:|---|---:|",
        ]
        for run in runs:
            for rate in run.inproc:
                lines.append(f"| {run.keys:,} | {rate.name} | {rate_text(rate.per_s)} |")
    if memory:
        lines += [
            "",
            "| open groups | open instances | bytes retained | bytes/instance | bytes/group |",
            "|---:|---:|---:|---:|---:|",
        ]
        for m in memory:
            lines.append(
                f"| {m.groups:,} | {m.instances:,} | {m.bytes:,} | {m.per_instance:,.0f} "
                f"| {m.per_group:,.0f} |"
            )
        big = max(memory, key=lambda m: m.instances)
        small = min(memory, key=lambda m: m.instances)
        if big.groups == small.groups and big.instances > small.instances:
            marginal = (big.bytes - small.bytes) / (big.instances - small.instances)
            lines += [
                "",
                f"One more instance in an open group costs {marginal:,.0f} B; an open group "
                f"itself (beyond its first instance) {small.per_group - marginal:,.0f} B.",
            ]
    return "\n".join(lines)


def _ratio(a: SideResult | None, b: SideResult | None) -> str:
    if a is None or b is None or not a.rate_from_stable or not b.rate_from_stable:
        return "-"
    return f"{a.rate_from_stable / b.rate_from_stable:.2f}"


def scale_out(runs: Sequence[KeysRun]) -> list[str]:
    """Replicas against one process of the same side, same run: a Markdown table (lines).

    ``best`` divides the best valid run of N processes by the best valid run of one
    (valid: every group complete, replicas joined in one go and stayed); ``each repeat``
    divides the i-th run of N by the i-th of one (run next to each other), ``?`` where
    either is not valid. Empty without replicated sides.
    """
    lines: list[str] = []
    for run in runs:
        named = _by_name(run.sides)
        single = {rs[0].base_name: rs for rs in named.values() if rs[0].replicas == 1}
        for name, results in named.items():
            one = single.get(results[0].base_name)
            if results[0].replicas == 1 or one is None:
                continue
            pairs = [
                _ratio(a, b) if _valid([a]) and _valid([b]) else "?"
                for a, b in zip(results, one, strict=False)
            ]
            best_n = max(_valid(results), key=lambda r: r.rate_from_stable or 0, default=None)
            best_1 = max(_valid(one), key=lambda r: r.rate_from_stable or 0, default=None)
            lines.append(
                f"| {run.keys:,} | {name} | {_rate(best_n)} | {_rate(best_1)} "
                f"| {_ratio(best_n, best_1)} | {', '.join(pairs)} |"
            )
    if not lines:
        return []
    return [
        "",
        "| keys | side (N processes, one consumer group) | events/s, best of N | events/s, "
        "best of 1 | N ÷ 1, best | N ÷ 1, each repeat |",
        "|---:|---|---:|---:|---:|---|",
        *lines,
        "",
        "N processes: CPU is their sum, peak RSS the largest one's (each one's in the "
        "details); runs where not every group came or the replicas did not join in one go "
        "and stay are left out of the ratios (?).",
    ]


def _rate(result: SideResult | None) -> str:
    return rate_text(result.rate_from_stable if result is not None else None)


def side_details(runs: Sequence[KeysRun]) -> str:
    """Per side: every mark, counts and notes (for the log of a run)."""
    out: list[str] = []
    for run in runs:
        out.append(
            f"keys={run.keys}: {run.events} events, {run.groups} expected groups, "
            f"produced in {run.produce_s:.1f} s"
        )
        for s in run.sides:
            marks = [
                f"stable +{(s.stable_ms - s.spawn_ms) / 1000:.2f}s" if s.stable_ms else "stable ?",
                f"first +{(s.first_ms - s.spawn_ms) / 1000:.2f}s" if s.first_ms else "first ?",
                f"last +{(s.last_ms - s.spawn_ms) / 1000:.2f}s" if s.last_ms else "last ?",
            ]
            out.append(
                f"  {s.name}: {', '.join(marks)}; groups {s.groups}, members {s.members}, "
                f"keys {s.keys}, first→last {rate_text(s.rate_from_first)} ev/s, "
                f"CPU {_cpu(s.cpu_s)} s (broker {_cpu(s.broker_cpu_s)} s), exit {s.exit_code}, "
                f"log {s.log_path}" + (f"; {'; '.join(s.notes)}" if s.notes else "")
            )
            if s.replicas > 1:
                rss = ", ".join(_num(r / 1024 if r else None) for r in s.peak_rss_kb_each)
                out.append(
                    f"    {s.replicas} processes: partitions {s.assignment or '?'} at the "
                    f"stable mark, peak RSS {rss} MB, "
                    + ("joined in one go, no rebalance" if s.clean_start else "NOT a clean start")
                )
    return "\n".join(out)


def _cpu(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "?"


def machine_facts(extra: Sequence[str] = ()) -> list[str]:
    """CPU, memory, OS and package versions."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    java_line = (java.stderr or java.stdout).splitlines()[0] if java.returncode == 0 else "?"
    versions = ", ".join(f"{name} {_version(name)}" for name in ("aiokafka", "reactivex", "orjson"))
    return [
        f"CPU: {os.cpu_count()} cores, {cpu}; memory {mem_gb:.0f} GiB",
        f"OS: {platform.platform()}",
        f"Python {platform.python_version()} ({platform.python_implementation()}); {versions}",
        f"Java: {java_line}",
        *extra,
    ]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"
