"""Priority queue with aging: order, anti-starvation and retry delays (virtual time)."""

from __future__ import annotations

import random

from processors.submit import JobQueue
from streams.events import Priority


def drain(queue: JobQueue, now: float) -> list[str]:
    out: list[str] = []
    while (item := queue.pop(now)) is not None:
        out.append(item.job_id)
    return out


def test_priority_order_then_oldest_first() -> None:
    queue = JobQueue(aging_s=0)
    jobs: list[tuple[str, Priority, float]] = [
        ("n1", "normal", 1.0),
        ("l1", "lower", 0.0),
        ("i1", "immediate", 5.0),
        ("h1", "higher", 3.0),
        ("n0", "normal", 0.5),
        ("i0", "immediate", 4.0),
    ]
    for job_id, priority, since in jobs:
        queue.push(job_id, priority, since)
    assert drain(queue, now=10.0) == ["i0", "i1", "h1", "n0", "n1", "l1"]


def test_twenty_mixed_jobs_come_out_in_priority_order_with_fifo_inside() -> None:
    rng = random.Random(7)
    priorities: list[Priority] = ["lower", "normal", "higher", "immediate"]
    queue = JobQueue(aging_s=3600)
    pushed = []
    for index in range(20):
        priority = rng.choice(priorities)
        queue.push(f"j{index:02d}", priority, waiting_since=float(index))
        pushed.append((f"j{index:02d}", priority))
    order = drain(queue, now=30.0)
    rank = {p: i for i, p in enumerate(priorities)}
    expected = [j for j, _ in sorted(pushed, key=lambda jp: (-rank[jp[1]], jp[0]))]
    assert order == expected


def test_aging_raises_a_level_per_interval_up_to_immediate() -> None:
    queue = JobQueue(aging_s=10)
    assert queue.effective_rank("lower", 0.0, 9.9) == 0
    assert queue.effective_rank("lower", 0.0, 10.0) == 1
    assert queue.effective_rank("lower", 0.0, 25.0) == 2
    assert queue.effective_rank("lower", 0.0, 1_000.0) == 3


def test_a_lower_job_is_not_starved_by_a_stream_of_immediate_jobs() -> None:
    """One new immediate job per second, one pick per second: without aging the lower
    job never runs; with aging_s=10 it runs once it has aged to immediate (30 s)."""
    for aging, expect_served in ((0.0, False), (10.0, True)):
        queue = JobQueue(aging_s=aging)
        queue.push("low", "lower", waiting_since=0.0)
        served_at = None
        for second in range(1, 120):
            queue.push(f"imm{second}", "immediate", waiting_since=float(second))
            item = queue.pop(now=float(second))
            assert item is not None
            if item.job_id == "low":
                served_at = second
                break
        assert (served_at is not None) is expect_served
        if expect_served:
            assert served_at == 30  # 3 levels x 10 s, then oldest wins the tie


def test_delayed_jobs_wait_for_ready_at_and_keep_their_age() -> None:
    queue = JobQueue(aging_s=0)
    queue.push("retry", "immediate", waiting_since=0.0, ready_at=50.0)
    queue.push("fresh", "lower", waiting_since=40.0)
    assert queue.next_ready_at() == 0.0  # "fresh" is ready now
    assert drain(queue, now=45.0) == ["fresh"]
    assert queue.next_ready_at() == 50.0
    assert queue.pop(now=49.9) is None
    item = queue.pop(now=50.0)
    assert item is not None and item.job_id == "retry" and item.waiting_since == 0.0
    assert queue.next_ready_at() is None


def test_push_replaces_and_remove_drops() -> None:
    queue = JobQueue(aging_s=0)
    queue.push("a", "lower", 0.0)
    queue.push("b", "normal", 1.0)
    queue.push("a", "immediate", 0.0)  # re-queued with another priority: one entry
    assert len(queue) == 2 and "a" in queue
    assert queue.remove("b") and not queue.remove("b")
    assert drain(queue, now=5.0) == ["a"]
    assert len(queue) == 0


def test_unknown_priority_is_refused() -> None:
    queue = JobQueue()
    try:
        queue.push("x", "urgent", 0.0)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "urgent" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("accepted an unknown priority")
