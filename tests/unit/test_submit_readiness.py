"""The submit role's readiness: ``submit partitions assigned`` follows the jobs ledger's
assignment (set while partitions are held, cleared once all are revoked), and every
ledger callback still reaches the submitter."""

from __future__ import annotations

from processors.http import ReadyFlag
from processors.roles import AssignmentFlag
from streams.events import Envelope, JobRetryRequested, envelope


class Recorder:
    """A ledger handler that records the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def assigned(self, partitions: frozenset[int]) -> None:
        self.calls.append(("assigned", partitions))

    async def revoked(self, partitions: frozenset[int]) -> None:
        self.calls.append(("revoked", partitions))

    def record(self, partition: int, offset: int, key: str, env: Envelope) -> None:
        self.calls.append(("record", (partition, offset, key, env.id)))

    def caught_up(self, partition: int) -> None:
        self.calls.append(("caught_up", partition))

    def committable(self, partition: int) -> int | None:
        self.calls.append(("committable", partition))
        return 7


async def test_the_flag_follows_the_assignment_and_calls_pass_through() -> None:
    inner = Recorder()
    flag = ReadyFlag("waiting")
    handler = AssignmentFlag(inner, flag)
    assert not flag.is_set

    handler.assigned(frozenset({0, 1}))
    assert flag.is_set
    env = envelope(JobRetryRequested(job_id="j1"), source="t", time_ms=1)
    handler.record(0, 3, "k", env)
    handler.caught_up(0)
    assert handler.committable(0) == 7

    await handler.revoked(frozenset({0}))
    assert flag.is_set  # partition 1 is still held
    await handler.revoked(frozenset({1}))
    assert not flag.is_set
    handler.assigned(frozenset())
    assert not flag.is_set  # an empty assignment is not an assignment

    assert [name for name, _ in inner.calls] == [
        "assigned", "record", "caught_up", "committable", "revoked", "revoked", "assigned",
    ]  # fmt: skip
    assert inner.calls[1] == ("record", (0, 3, "k", env.id))
