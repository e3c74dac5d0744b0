"""Groups that close before they are quiet (issue 15): max age on virtual time, a
completion rule, and an early close whose old deadline passes later."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import ReactiveTest, TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.aetitle.completion import load_rule
from processors.contracts import ProcessorContext
from processors.windows import ClosedGroup, SessionState, session_window
from streams.errors import ConfigError

S = 1000
T0 = 1_732_800_000_000


def test_max_age_on_virtual_time_closes_a_never_quiet_group_and_starts_a_new_one() -> None:
    """An instance every 3 s for 40 s, timeout 5, maxAge 20 (1 tick = 1 s)."""
    sched = TestScheduler()
    window = session_window(lambda v: v.key, 5 * S, sched, grace_ms=0)
    window.state.max_age_ms = 20 * S
    messages = [
        ReactiveTest.on_next(float(3 * n), (0, n, SimpleNamespace(received_at=3 * n * S, key="xa")))
        for n in range(14)
    ]
    out: list[tuple[float, tuple[str, tuple[int, ...], int, int]]] = []

    def seen(g: ClosedGroup[Any, Any, Any]) -> None:
        out.append((sched.clock, (g.reason, g.offsets, g.first_received_at, g.deadline)))

    sched.create_hot_observable(messages).pipe(window).subscribe(on_next=seen)
    sched.start()
    assert out == [
        (20.0, ("max_age", tuple(range(7)), 0, 20 * S)),  # 0..18 s, closed at first + 20
        (41.0, ("max_age", tuple(range(7, 14)), 21 * S, 41 * S)),  # later ones: a new group
    ]


def test_an_early_close_leaves_no_trap_for_its_old_deadline() -> None:
    closed: list[tuple[str, str, int]] = []
    state: SessionState[str, Any, Any] = SessionState(
        lambda v: v.key, 5 * S, emit=lambda g: closed.append((g.key, g.reason, len(g.offsets)))
    )
    state.add(0, 0, SimpleNamespace(received_at=0, key="a"))
    assert state.close(0, "a", "forced", at=1 * S)
    state.add(0, 1, SimpleNamespace(received_at=2 * S, key="a"))  # a new group, same key
    state.advance(0, 6 * S)  # passes the first group's old deadline (5 s): nothing
    assert closed == [("a", "forced", 1)]
    state.advance(0, 8 * S)
    assert closed == [("a", "forced", 1), ("a", "timeout", 1)]
    assert state.open_groups == 0


def _processor(tmp_path: Path, **settings: object) -> tuple[RecordingSink, AeTitleJobProcessor]:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    raw = {"pipeline-a": "PA", "timeout": 5, "groupBy": "Series", **settings}
    proc = AeTitleJobProcessor("AET1", raw, sink, sched)
    asyncio.run(proc.start(ProcessorContext(storage=tmp_path, grace_ms=0, log_clock=True)))
    return sink, proc


def test_images_in_acquisition_closes_a_series_once_all_have_arrived(tmp_path: Path) -> None:
    sink, proc = _processor(tmp_path, completeWhen="ImagesInAcquisition")
    assert AeTitleJobProcessor.required_tags(
        "AET1", {"pipeline-a": "PA", "completeWhen": "ImagesInAcquisition"}
    ) == ("00201002",)
    tags = {"00201002": "3"}
    for n in range(3):
        proc.on_next((0, n, make_instance(received_at=T0, series="Se1", tags=tags), T0 + n * S))
    (record,) = sink.records  # complete at the third instance, no tick needed
    assert (record.reason, len(record.instances)) == ("complete", 3)
    proc.on_next((0, 3, make_instance(received_at=T0, series="Se1", tags=tags), T0 + 4 * S))
    proc.on_watermark(0, T0 + 10 * S)
    assert [r.reason for r in sink.records] == ["complete", "timeout"]  # a late one: new group


def test_without_a_rule_groups_close_only_when_quiet(tmp_path: Path) -> None:
    sink, proc = _processor(tmp_path)
    for n in range(3):
        inst = make_instance(received_at=T0, series="Se1", tags={"00201002": "3"})
        proc.on_next((0, n, inst, T0 + n * S))
    assert sink.records == []  # off by default


def complete_at_two(count: int, instance: object) -> bool:
    return count >= 2


complete_at_two.required_tags = ("00280008",)  # type: ignore[attr-defined]


def test_a_rule_of_your_own_is_loaded_by_name() -> None:
    rule = load_rule(f"{__name__}:complete_at_two")
    assert rule.tags == ("00280008",) and rule.check(2, object())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Everything", "use one of ImagesInAcquisition"),
        ("no_such_module_xyz:f", "cannot load"),
        (3, "is not a rule name"),
    ],
)
def test_a_bad_completion_rule_is_a_config_error_naming_the_key(
    value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        AeTitleJobProcessor.parse_settings("AET1", {"pipeline-a": "PA", "completeWhen": value})
    assert "processorSettings.completeWhen" in str(info.value) and message in str(info.value)
