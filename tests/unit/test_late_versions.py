"""Late arrivals as versions (issue 16): ``lateArrivals: amend`` on the bus clock, the
``group.updated`` event and its schema, the settings, and the reclaimer keeping a
version's files for the next one. Virtual time and pure folds only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from helpers.instances import RecordingSink, make_instance
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor, parse_settings
from processors.contracts import ProcessorContext
from processors.jobnames import group_id
from processors.reclaim.state import ReclaimLedger
from streams.errors import ConfigError
from streams.events import (
    GROUP_UPDATED,
    GroupClosed,
    GroupUpdated,
    JobSubmitted,
    decode,
    encode,
    envelope,
    schema_path,
)

T0 = 1_732_800_000_000
S = 1000
AE = "AET1"


def processor(tmp_path: Path, **settings: object) -> tuple[RecordingSink, AeTitleJobProcessor]:
    sched = TestScheduler()
    sink = RecordingSink(sched)
    raw = {"pipeline-lung": "PL", "pipeline-heart": "PH", "timeout": 5, **settings}
    proc = AeTitleJobProcessor(AE, raw, sink, sched)
    asyncio.run(proc.start(ProcessorContext(storage=tmp_path, grace_ms=0, log_clock=True)))
    return sink, proc


def study_with_a_late_series(proc: AeTitleJobProcessor, late_s: int) -> None:
    """Series 1 and 2 at 0-1 s (close at 6 s), series 3 ``late_s`` after the close; a
    tick every second, as the process writes them."""
    plan = {0: "Se1", 1: "Se2", 6 + late_s: "Se3", 7 + late_s: "Se3"}
    offset = 0
    for second in range(0, 6 + late_s + 15):
        at = T0 + second * S
        proc.on_watermark(0, at - 1)
        if second in plan:
            item = make_instance(received_at=at, ae=AE, study="ST", series=plan[second])
            proc.on_next((0, offset, item, at))
            offset += 1


def test_a_series_8_s_after_the_close_makes_version_2_with_all_instances(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path, lateArrivals="amend", lateWindow=60)
    study_with_a_late_series(proc, 8)
    first, second = sink.records
    assert type(first) is GroupClosed and len(first.instances) == 2
    assert first.files_kept_until == T0 + 6 * S + 60 * S  # closed at 6 s, + lateWindow
    assert isinstance(second, GroupUpdated)
    assert second.version == 2
    assert [i.series_instance_uid for i in second.instances] == ["Se1", "Se2", "Se3", "Se3"]
    assert second.added == tuple(i.sop_instance_uid for i in second.instances[2:])
    assert [(i.partition, i.offset) for i in second.inputs] == [(0, 2), (0, 3)]
    assert second.supersedes is not None
    assert second.supersedes.group_id == group_id(AE, 0, 0)
    assert second.supersedes.version == 1
    assert second.supersedes.job_ids == tuple(j.job_id for j in first.jobs)
    assert [j.pipeline_name for j in second.jobs] == ["lung", "heart"]  # one new job each
    assert not {j.job_id for j in second.jobs} & {j.job_id for j in first.jobs}
    assert second.first_received_at == T0 and second.last_received_at == T0 + 15 * S
    # Written as an event of its own type, valid against its schema, read back equal.
    wire = encode(envelope(second, source="t", time_ms=T0))
    schema = json.loads(schema_path("group.updated").read_text())
    jsonschema.validate(orjson.loads(wire), schema)
    assert decode(wire).data == second and decode(wire).type == GROUP_UPDATED


def test_a_third_version_supersedes_the_second(tmp_path: Path) -> None:
    sink, proc = processor(tmp_path, lateArrivals="amend", lateWindow=60)
    study_with_a_late_series(proc, 8)
    at = T0 + 40 * S
    proc.on_next((0, 10, make_instance(received_at=at, ae=AE, study="ST", series="Se4"), at))
    proc.on_watermark(0, at + 6 * S)
    third = sink.records[-1]
    assert isinstance(third, GroupUpdated) and third.version == 3
    assert len(third.instances) == 5 and third.supersedes is not None
    assert (third.supersedes.group_id, third.supersedes.version) == (group_id(AE, 0, 0), 2)


def test_by_default_and_after_the_window_a_late_series_is_a_group_of_its_own(
    tmp_path: Path,
) -> None:
    sink, proc = processor(tmp_path)
    study_with_a_late_series(proc, 8)
    assert [type(r) for r in sink.records] == [GroupClosed, GroupClosed]
    assert [r.files_kept_until for r in sink.records] == [0, 0]
    sink, proc = processor(tmp_path, lateArrivals="amend", lateWindow=10)
    study_with_a_late_series(proc, 11)  # the window ended before the series came
    assert [type(r) for r in sink.records] == [GroupClosed, GroupClosed]
    assert len(proc.versions or ()) == 1  # only the newest version is still amendable


def test_settings_name_the_key_and_the_fix() -> None:
    settings, _ = parse_settings(AE, {"pipeline-a": "A", "lateArrivals": "Amend"})
    assert (settings.late_arrivals, settings.late_window_s) == ("amend", 60)
    with pytest.raises(ConfigError) as caught:
        parse_settings(AE, {"pipeline-a": "A", "lateArrivals": "merge", "lateWindow": 0})
    text = "\n".join(caught.value.problems)
    assert "processorSettings.lateArrivals: 'merge' is not one of new-group, amend" in text
    assert "processorSettings.lateWindow: 0 is not a whole number of seconds above 0" in text


def _group(env_id: str, uris: list[str], job: str, kept_until: int) -> object:
    from streams.events import GroupInstance, JobSpec

    return envelope(
        GroupClosed(
            "p", AE, "g", "k", "timeout", 1, 2,
            tuple(GroupInstance(u, "1", "1", u) for u in uris), (),
            (JobSpec(job, "n", "lung", "PL", "normal"),),
            files_kept_until=kept_until,
        ),
        source="t", time_ms=1, event_id=env_id,
    )  # fmt: skip


def _submitted(job: str) -> object:
    return envelope(
        JobSubmitted(job, "n", AE, "lung", "PL", "normal", "/p", (), 1),
        source="t",
        time_ms=2,
    )


def test_the_reclaimer_keeps_a_versions_files_until_its_window_ends() -> None:
    ledger = ReclaimLedger()
    assert ledger.apply("k", _group("v1", ["/a", "/b"], "j1", 100)) == ()  # type: ignore[arg-type]
    assert ledger.apply("k", _submitted("j1")) == ()  # type: ignore[arg-type]
    assert list(ledger.ready()) == [] and ledger.kept_due(99) == []
    (due,) = ledger.kept_due(100)
    assert due.group_id == "v1"
    # Version 2 lists the same files and more, kept until 200: v1's shared files wait.
    ledger.apply("k", _group("v2", ["/a", "/b", "/c"], "j2", 200))  # type: ignore[arg-type]
    ledger.apply("k", _submitted("j2"))  # type: ignore[arg-type]
    plan = ledger.plan(due, now_ms=150)
    assert (plan.delete, [i.uri for i in plan.held]) == ((), ["/a", "/b"])
    assert [g.group_id for g in ledger.kept_due(200)] == ["v1", "v2"]
    (v2,) = [g for g in ledger.kept_due(200) if g.group_id == "v2"]
    assert [i.uri for i in ledger.plan(v2, now_ms=200).delete] == ["/a", "/b", "/c"]
    # A group without a hold is ready by the fold as before.
    assert [g.group_id for g in ledger.apply("k", _group("x", ["/x"], "jx", 0))] == []
    assert [g.group_id for g in ledger.apply("k", _submitted("jx"))] == ["x"]  # type: ignore[arg-type]
