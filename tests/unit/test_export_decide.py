"""The export retry rule and the attempt decision (pure; clock and randomness pinned)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from processors.export import (
    classify,
    decide,
    due,
    ends_attempt,
    fold,
    instance_of,
    next_due_at,
    plan_batches,
)
from processors.export.state import ExportState, FileState
from processors.submit.backoff import RetryPolicy
from streams.events import (
    ExportCompleted,
    ExportFailed,
    ExportFile,
    ExportInstance,
    ExportRequested,
    envelope,
)
from streams.scu import SendOutcome

POLICY = RetryPolicy(max_attempts=3, initial_s=2.0, max_s=60.0)


def half() -> float:
    return 0.5


def out(
    kind: str, status: int | None = None, reason: str | None = None, **kw: object
) -> SendOutcome:
    return SendOutcome(0, "/f.dcm", kind, "1.2.3", status=status, reason=reason, error="e", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (out("sent", 0x0000), "delivered"),
        (out("sent", 0xB000), "delivered"),
        (out("refused", 0x0111), "delivered"),
        (out("refused", 0xA700), "retriable"),
        (out("refused", 0xA7FF), "retriable"),
        (out("refused", 0x0213), "retriable"),
        (out("refused", 0xA900), "permanent"),
        (out("refused", 0xC000), "permanent"),
        (out("refused", 0xCFFF), "permanent"),
        (out("refused", 0x0122), "permanent"),
        (out("failed", reason="connect_failed"), "retriable"),
        (out("failed", reason="rejected_transient"), "retriable"),
        (out("failed", reason="rejected_permanent"), "retriable"),
        (out("failed", reason="association_aborted"), "retriable"),
        (out("failed", reason="association_dropped"), "retriable"),
        (out("failed", reason="timeout"), "retriable"),
        (out("failed", reason="not_sent"), "retriable"),
        (out("failed", reason="unreadable"), "retriable"),
        (out("failed", reason="not_confirmed"), "retriable"),
        (out("failed", reason="http_error", http_status=503), "retriable"),
        (out("failed", reason="http_error", http_status=500), "retriable"),
        (out("failed", reason="http_error", http_status=429), "retriable"),
        (out("failed", reason="http_error", http_status=408), "retriable"),
        (out("failed", reason="http_error", http_status=401), "permanent"),
        (out("failed", reason="http_error", http_status=413), "permanent"),
        (out("failed", reason="not_dicom"), "permanent"),
        (out("failed", reason="missing"), "permanent"),
        (out("failed", reason="no_context"), "permanent"),
        (out("failed", reason="conversion"), "permanent"),
    ],
)
def test_the_rule(outcome: SendOutcome, verdict: str) -> None:
    assert classify(outcome) == verdict


def test_instance_records() -> None:
    f = FileState("/f.dcm", "1.2.3")
    assert instance_of(out("sent", 0), f) == ExportInstance("1.2.3", "/f.dcm", "sent", 0, "")
    dup = instance_of(out("refused", 0x0111), f)
    assert (dup.status, dup.code) == ("sent", 0x0111) and "already" in dup.error
    refused = instance_of(out("refused", 0xA900), f)
    assert (refused.status, refused.code, refused.retriable) == ("refused", 0xA900, False)
    dropped = instance_of(out("failed", reason="association_dropped"), f)
    assert (dropped.status, dropped.code, dropped.retriable) == ("failed", None, True)


def test_an_attempt_stops_after_a_link_failure_or_out_of_resources() -> None:
    assert ends_attempt([out("sent", 0), out("failed", reason="association_dropped")])
    assert ends_attempt([out("failed", reason="connect_failed")])
    assert ends_attempt([out("refused", 0xA700)])
    assert ends_attempt([out("failed", reason="http_error", http_status=503)])
    assert not ends_attempt([out("sent", 0), out("refused", 0xA900)])
    assert not ends_attempt([out("failed", reason="not_dicom")])
    assert not ends_attempt([out("failed", reason="http_error", http_status=400)])


def state(n: int = 4, **changes: object) -> ExportState:
    files = tuple(ExportFile(f"/d/{i}.dcm", f"1.2.{i}") for i in range(n))
    ledger = fold([("r", envelope(ExportRequested("r", ("pacs",), files), source="s", time_ms=1))])
    found = ledger.get("r", "pacs")
    assert found is not None
    return replace(found, **changes)  # type: ignore[arg-type]


def ok(i: int) -> ExportInstance:
    return ExportInstance(f"1.2.{i}", f"/d/{i}.dcm", "sent", 0)


def no(i: int, *, retriable: bool) -> ExportInstance:
    code = 0xA700 if retriable else 0xA900
    return ExportInstance(f"1.2.{i}", f"/d/{i}.dcm", "refused", code, "refused", retriable)


def test_everything_delivered_completes_with_the_last_batch() -> None:
    d = decide(state(), 1, [(ok(0), ok(1)), (ok(2), ok(3))], policy=POLICY, now_ms=0, rand=half)
    assert d.event == ExportCompleted("r", "pacs", 1, (ok(2), ok(3)))
    assert d.retry_delay_s is None


def test_nothing_owed_completes_too() -> None:
    s = state(2)
    s = replace(s, files=tuple(replace(f, delivered_attempt=1) for f in s.files))
    assert isinstance(decide(s, 2, [], policy=POLICY, now_ms=0, rand=half).event, ExportCompleted)


def test_one_permanent_refusal_dead_letters_and_names_it_with_the_rest_delivered() -> None:
    batches = [(ok(0), no(1, retriable=False)), (ok(2), ok(3))]
    d = decide(state(), 1, batches, policy=POLICY, now_ms=0, rand=half)
    event = d.event
    assert isinstance(event, ExportFailed) and not event.will_retry and d.retry_delay_s is None
    assert no(1, retriable=False) in event.instances  # named, though from an earlier batch
    assert ok(0) not in event.instances  # delivered earlier: in the progress event
    assert event.error.startswith("1 of 4 files not delivered to pacs (0 retriable, 1 refused")
    assert "refused 0xA900" in event.error


def test_retriable_left_retries_with_backoff_then_gives_up() -> None:
    d = decide(
        state(), 1, [(ok(0), no(1, retriable=True))], policy=POLICY, now_ms=10_000, rand=half
    )
    event = d.event
    assert isinstance(event, ExportFailed) and event.will_retry
    assert d.retry_delay_s == 1.0  # half of the 2 s ceiling of the first failure
    assert event.retry_at == 11_000
    assert "3 retriable" in event.error  # file 1 and the two never tried (attempt stopped)
    last = decide(
        state(attempts=2), 3, [(no(1, retriable=True),)], policy=POLICY, now_ms=0, rand=half
    )
    assert isinstance(last.event, ExportFailed) and not last.event.will_retry
    assert last.event.error.endswith("(gave up after 3 attempts)")
    after_retry = decide(
        state(attempts=3, round_start=3), 4, [(no(1, retriable=True),)],
        policy=POLICY, now_ms=0, rand=half,
    )  # fmt: skip
    assert isinstance(after_retry.event, ExportFailed) and after_retry.event.will_retry


def test_plan_and_due() -> None:
    files = tuple(FileState(f"/d/{i}") for i in range(5))
    assert [len(b) for b in plan_batches(files, 2)] == [2, 2, 1]
    assert plan_batches((), 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(files, 0)
    pending = state(pending_since=5)
    waiting = state(status="failed", retry_at=2000, pending_since=1)
    dead = state(status="dead")
    orphan = ExportState("r2", "pacs", "pending")
    assert due([waiting, pending, dead, orphan], 1999) == [pending]
    assert due([waiting, pending, dead, orphan], 2000) == [waiting, pending]
    assert next_due_at([waiting, dead]) == 2000
    assert next_due_at([waiting, pending]) == 0
    assert next_due_at([dead, orphan]) is None
