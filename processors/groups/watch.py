"""``dicom-adapter groups watch``: a live terminal view (rich), refreshed each interval.

Open groups per AE title with their age and time to deadline, the latest jobs, the
dead letters and the rates of the last minutes, all read from the bus like ``groups
list`` and ``jobs list``. ``q`` or Ctrl-C quits. :func:`render` is pure (tests render
it to text); :func:`watch` is the shell around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from processors.groups.bus import open_groups, wall_ms
from processors.groups.throughput import Bucket, throughput
from processors.groups.view import GroupRow
from processors.submit.state import JobState, fold_log
from streams.errors import BrokerError
from streams.kafka import Connection, TopicNames, read_topic

RECENT_JOBS = 10
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class Screen:
    """What one refresh shows."""

    now: int
    groups: Sequence[GroupRow]
    jobs: Sequence[JobState]
    buckets: Sequence[Bucket]


def _span(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def render(screen: Screen, *, ae_title: str | None = None) -> RenderableType:
    """The whole view of ``screen`` (no patient data: group keys are not shown)."""
    now = screen.now
    title = f"open groups ({len(screen.groups)})" + (f" of {ae_title}" if ae_title else "")
    groups = Table(title=title, title_justify="left", expand=True)
    for column in ("AE", "group id", "group by", "n", "age", "due in", "owner"):
        groups.add_column(column, no_wrap=column == "group id", overflow="fold")
    for row in sorted(screen.groups, key=lambda r: (r.ae_title, r.group.first_received_at)):
        g = row.group
        due = g.deadline - now
        due_text = (_span(due) if due > 0 else "due") + (
            " (max age)" if g.due_reason == "max_age" else ""
        )
        groups.add_row(
            row.ae_title,
            g.group_id,
            g.group_by,
            str(g.instances),
            _span(now - g.first_received_at),
            due_text,
            row.owner + (" (stale)" if row.stale else ""),
        )
    ordered = sorted(screen.jobs, key=lambda j: (j.queued_at, j.job_id))
    jobs = Table(title="recent jobs", title_justify="left", expand=True)
    for column in ("job id", "AE", "pipeline", "state", "attempts", "instances"):
        jobs.add_column(column, no_wrap=column == "job id", overflow="fold")
    for job in ordered[-RECENT_JOBS:]:
        jobs.add_row(
            job.job_id, job.ae_title, job.pipeline_name, job.status, str(job.attempts),
            str(len(job.instances)),
        )  # fmt: skip
    dead = [j for j in ordered if j.status == "dead"]
    letters = Table(title=f"dead letters ({len(dead)})", title_justify="left", expand=True)
    for column in ("job id", "AE", "pipeline", "attempts", "last error"):
        letters.add_column(column, no_wrap=column == "job id", overflow="fold")
    for job in dead[-RECENT_JOBS:]:
        letters.add_row(
            job.job_id, job.ae_title, job.pipeline_name, str(job.attempts), job.last_error
        )
    recent = list(screen.buckets)[-RATE_MINUTES:]
    minutes = max(len(recent), 1)
    rates = Text(
        f"last {minutes} min, per minute: "
        f"{sum(b.instances for b in recent) / minutes:.1f} instances grouped, "
        f"{sum(b.jobs for b in recent) / minutes:.1f} jobs queued, "
        f"{sum(b.submitted for b in recent) / minutes:.1f} submitted, "
        f"{sum(b.failed for b in recent) / minutes:.1f} failed attempts   (q quits)"
    )
    return Group(groups, jobs, letters, rates)


async def fetch(kafka: Connection, names: TopicNames, ae_title: str | None) -> Screen:
    """One refresh's data, read from the bus."""
    found, records = await asyncio.gather(
        open_groups(kafka, names.groups, ae_title=ae_title), read_topic(kafka, names.jobs)
    )
    ledger = fold_log(records)
    jobs = [j for j in ledger if ae_title is None or j.ae_title == ae_title]
    now = wall_ms()
    return Screen(now, found, jobs, throughput((r.envelope for r in records), now))


def watch(kafka: Connection, names: TopicNames, *, ae_title: str | None, interval_s: float) -> int:
    """Run the live view until q or Ctrl-C; returns the exit code (0)."""
    asyncio.run(_watch(kafka, names, ae_title, interval_s))
    return 0


async def _watch(
    kafka: Connection, names: TopicNames, ae_title: str | None, interval_s: float
) -> None:
    quit_ = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, quit_.set)
    console = Console()
    try:
        with _keys(quit_), Live(console=console, auto_refresh=False) as live:
            while not quit_.is_set():
                try:
                    view = render(await fetch(kafka, names, ae_title), ae_title=ae_title)
                except BrokerError as exc:
                    view = Text(f"cannot read the bus: {exc} (retrying; q quits)")
                live.update(view, refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(quit_.wait(), interval_s)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


@contextlib.contextmanager
def _keys(quit_: asyncio.Event) -> Iterator[None]:
    """Read single keys from a terminal (``q`` or Ctrl-C sets ``quit_``)."""
    stdin = sys.stdin
    if not stdin.isatty():
        yield
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        pressed = os.read(fd, 64)
        if b"q" in pressed.lower() or b"\x03" in pressed:
            quit_.set()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
