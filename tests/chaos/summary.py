"""Sum a ``CHAOS_REPORT`` file (one JSON line per run) into the table of
docs/reliability.md: ``python -m tests.chaos.summary chaos.jsonl``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    ("instances", "C-STOREs sent"),
    ("acked", "answered Success"),
    ("refused", "refused 0xA700 (disk past the watermark)"),
    ("unanswered", "no answer (SCP killed mid-association)"),
    ("groups", "groups closed"),
    ("jobs", "jobs"),
    ("submitted", "jobs submitted"),
    ("dead_lettered", "jobs dead-lettered (platform refused the study)"),
    ("kills", "SIGKILLs (each followed by a restart)"),
    ("aimed", "kills at their aimed moment"),
    ("paused_s", "seconds the broker was paused"),
    ("filled_s", "seconds the disk was past the watermark"),
    ("split_keys", "keys grouped more than once (sent at least the timeout apart)"),
    ("orphan_files", "orphan files (see Known limits)"),
    ("ledger_copies", "ledger events written twice, same id and content (see Known limits)"),
)


def summarize(lines: list[dict[str, object]]) -> str:
    """The markdown table of ``lines``."""
    failed = [r for r in lines if r.get("violations")]
    seeds = sorted(int(str(r["seed"])) for r in lines)
    seconds = sum(float(str(r.get("seconds", 0))) for r in lines)
    out = [
        f"{len(lines)} runs (seeds {seeds[0]}-{seeds[-1]}), {len(failed)} with a violation, "
        f"{seconds / 60:.0f} min of runs",
        "",
        "| | total | per run (min-max) |",
        "|---|---|---|",
    ]
    for key, label in COLUMNS:
        values = [int(str(r.get(key, 0))) for r in lines]
        out.append(f"| {label} | {sum(values)} | {min(values)}-{max(values)} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.chaos.summary CHAOS_REPORT_FILE", file=sys.stderr)
        return 2
    lines = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line]
    if not lines:
        print(f"{argv[0]}: no runs recorded", file=sys.stderr)
        return 2
    print(summarize(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
