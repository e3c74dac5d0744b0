"""``dicom-adapter replay``: the replay core on a scripted log, the diff, the report and
the command's usage errors (no broker: the log is built in memory, time is virtual)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from reactivex.testing import TestScheduler

from processors.cli import main
from processors.commands.replay import in_range, parse_time, select_ae_titles
from processors.commands.replay_view import write_json, write_text
from processors.jobnames import group_id
from processors.replay import (
    CollectingSink,
    ReplayResult,
    diff_groups,
    replay_config,
    replay_processors,
    replay_records,
)
from streams.config import AdapterConfig
from streams.errors import ConfigError, UsageError
from streams.events import ClockTick, InputOffset, envelope
from streams.kafka import Record
from tests.helpers.instances import make_instance

AE = "AET1"
T0 = 1_732_800_000_000
S = 1000


def config(tmp_path: Path, **settings: Any) -> AdapterConfig:
    raw = {"pipeline-lung": "PL", "groupBy": "Study", "timeout": 5, **settings}
    return AdapterConfig.model_validate(
        {
            "storage": str(tmp_path),
            "scp": {"ae_titles": [{"ae_title": AE, "processorSettings": raw}]},
        }
    )


def scripted_log() -> list[Record]:
    """Partition 0: study A in two bursts 8 s apart, study B once; a tick every second
    (as the process writes them while instances keep coming) up to 20 s after the last
    instance."""
    plan = [(0, "A", "a1"), (1, "A", "a2"), (3, "B", "b1"), (9, "A", "a3"), (10, "A", "a4")]
    records: list[Record] = []
    by_second = {at: (study, sop) for at, study, sop in plan}
    for second in range(0, 31):
        at = T0 + second * S
        if second in by_second:
            study, sop = by_second[second]
            item = make_instance(received_at=at, ae=AE, study=study, sop=sop)
            records.append(
                Record("t", 0, len(records), "k", at, envelope(item, source="s", time_ms=at))
            )
        tick = envelope(ClockTick(at - 1, "p"), source="p", time_ms=at)
        records.append(Record("t", 0, len(records), "k", at, tick))
    return records


def offsets_of(result: ReplayResult, sops: list[str]) -> list[InputOffset]:
    found = (i for i, sop in result.sop_at.items() if sop in sops)
    return sorted(found, key=lambda i: (i.partition, i.offset))


def test_timeout_5_splits_the_late_burst_and_timeout_30_keeps_it_open(tmp_path: Path) -> None:
    log = scripted_log()
    five = replay_config(config(tmp_path), log)
    shapes = [
        (g.open, g.record.group_key, sorted(i.sop_instance_uid for i in g.record.instances))
        for g in five.groups
    ]
    assert shapes == [
        (False, "A", ["a1", "a2"]),
        (False, "B", ["b1"]),
        (False, "A", ["a3", "a4"]),
    ]
    assert five.groups[0].record.reason == "timeout" and len(five.groups[0].record.jobs) == 1
    thirty = replay_config(config(tmp_path, timeout=30), log)
    merged = [
        (g.open, sorted(i.sop_instance_uid for i in g.record.instances)) for g in thirty.groups
    ]
    assert sorted(merged) == [(True, ["a1", "a2", "a3", "a4"]), (True, ["b1"])]
    # Same first input: the merged group is the first one of timeout 5, with its job id.
    first_five = five.groups[0].record
    merged_a = next(g for g in thirty.groups if g.record.group_key == "A").record
    assert merged_a.inputs[0] == first_five.inputs[0]


def test_fifteen_closes_the_merged_group_with_the_job_ids_of_its_first_input(
    tmp_path: Path,
) -> None:
    log = scripted_log()
    fifteen = replay_config(config(tmp_path, timeout=15), log)
    a = next(g for g in fifteen.groups if g.record.group_key == "A")
    assert not a.open and a.record.reason == "timeout"
    assert a.record.last_received_at == T0 + 10 * S
    assert a.record.jobs[0].name.endswith("132025")  # deadline: last + 15 s, bus time
    five = replay_config(config(tmp_path), log)
    assert a.record.jobs[0].job_id == five.groups[0].record.jobs[0].job_id


def test_the_diff_names_the_moves(tmp_path: Path) -> None:
    log = scripted_log()
    ledger = [g.record for g in replay_config(config(tmp_path), log).groups]
    replayed = replay_config(config(tmp_path, timeout=30), log)
    diff = diff_groups(ledger, [g.record for g in replayed.groups], replayed.sop_at)
    g1, gb, g2 = (group_id(AE, r.inputs[0].partition, r.inputs[0].offset) for r in ledger)
    assert diff.unchanged == (gb,)
    assert diff.changed == (g1,)
    assert diff.removed == (g2,)
    assert diff.added == ()
    assert [(m.sop_instance_uid, m.before, m.after) for m in diff.moves] == [
        ("a3", g2, g1),
        ("a4", g2, g1),
    ]
    assert [m.input for m in diff.moves] == offsets_of(replayed, ["a3", "a4"])
    # And back: the merged group split again.
    back = diff_groups([g.record for g in replayed.groups], ledger, replayed.sop_at)
    assert (back.changed, back.added, back.removed) == ((g1,), (g2,), ())


def test_same_settings_change_nothing(tmp_path: Path) -> None:
    log = scripted_log()
    a = replay_config(config(tmp_path), log)
    b = replay_config(config(tmp_path, timeout=5), log)
    diff = diff_groups([g.record for g in a.groups], [g.record for g in b.groups])
    assert (diff.changed, diff.removed, diff.added, diff.moves) == ((), (), (), ())
    assert len(diff.unchanged) == 3


def test_an_instance_without_a_group_key_is_ignored_not_grouped(tmp_path: Path) -> None:
    at = T0
    item = make_instance(received_at=at, ae=AE, study="")
    log = [Record("t", 0, 0, "k", at, envelope(item, source="s", time_ms=at))]
    result = replay_config(config(tmp_path), log)
    assert result.groups == () and [r.reason for r in result.removals] == ["missing-group-key"]


def test_report_shows_groups_and_diff_and_hides_patient_keys(tmp_path: Path) -> None:
    log = scripted_log()
    ledger = [g.record for g in replay_config(config(tmp_path), log).groups]
    result = replay_config(config(tmp_path, groupBy="Patient", timeout=30), log)
    diff = diff_groups(ledger, [g.record for g in result.groups], result.sop_at)
    summary = {"records": result.records, "closed": 0, "open": 1, "ignored": 0}
    out = io.StringIO()
    write_json(out, result.groups, diff, summary, show_phi=False)
    doc = orjson.loads(out.getvalue())
    (group,) = doc["groups"]
    assert group["state"] == "open" and group["group_key"] == "<redacted>"
    assert group["instances"] == ["a1", "a2", "b1", "a3", "a4"] and group["jobs"] == []
    assert {m["sop_instance_uid"] for m in doc["diff"]["moves"]} == {"b1", "a3", "a4"}
    text = io.StringIO()
    write_text(text, result.groups, diff, summary)
    assert "P1" not in text.getvalue()
    assert "3 instances moved" in text.getvalue()
    assert "moved b1 (input 0:" in text.getvalue()


def test_only_the_ae_title_job_processor_and_patient_nested_groupings_replay(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"groupBy Modality spans patients"):
        replay_config(config(tmp_path, groupBy="0008,0060"), [])
    cache = AdapterConfig.model_validate(
        {
            "storage": str(tmp_path),
            "scp": {
                "ae_titles": [{"ae_title": "C", "processor": "cache", "processorSettings": {}}]
            },
        }
    )
    with pytest.raises(ConfigError, match=r"not the AE Title Job Processor; replay only"):
        replay_config(cache, [])


def test_replay_processors_start_on_the_log_clock(tmp_path: Path) -> None:
    sink, sched = CollectingSink(), TestScheduler()
    procs = asyncio.run(replay_processors(config(tmp_path), sink, sched, storage=tmp_path))
    assert procs[AE].window.log_clock
    result = replay_records(procs, sink, sched, scripted_log()[:3])
    assert result.groups[0].open  # a tick never passed it


def test_times_ranges_and_ae_titles() -> None:
    assert parse_time("1732800000000", "--from") == T0
    assert parse_time("2024-11-28T13:20:00Z", "--from") == T0
    assert parse_time("2024-11-28T13:20:00", "--from") == T0  # no zone: UTC
    assert parse_time("2024-11-28T14:20:00+01:00", "--to") == T0
    assert parse_time(None, "--to") is None
    with pytest.raises(UsageError, match=r"--to 'yesterday' is not a time"):
        parse_time("yesterday", "--to")
    assert in_range(T0, T0, None) and not in_range(T0, None, T0) and in_range(T0, None, T0 + 1)
    cfg = config(Path("/tmp"))
    assert select_ae_titles(cfg, None) is cfg
    with pytest.raises(UsageError, match=r"--ae NOPE: not an AE title of the config; it has AET1"):
        select_ae_titles(cfg, ["NOPE"])


def test_cli_usage_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--kafka", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "replay needs --config FILE" in err
    path = tmp_path / "c.yaml"
    path.write_text(f"storage: {tmp_path}\nscp:\n  ae_titles: []\n")
    args = ["replay", "--config", str(path), "--kafka", "127.0.0.1:1", "--from", "soon"]
    assert main(args) == 2
    assert "--from 'soon' is not a time" in capsys.readouterr().err
    assert main(["replay", "--config", str(path), "--kafka", "127.0.0.1:1"]) == 2
    assert "no scp.ae_titles" in capsys.readouterr().err
