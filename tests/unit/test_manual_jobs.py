"""Manual jobs (``jobs resubmit``, ``studies reprocess``): the pure parts -- which files
are gone, which pipelines, the record written, the study's instances (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.aetitle import parse_settings
from processors.cli import main
from processors.commands.manual import (
    choose_pipelines,
    manual_group,
    missing_files,
    require_files,
)
from processors.commands.studies import study_instances
from streams.errors import UsageError
from streams.events import GroupInstance, envelope
from streams.kafka import Record
from tests.helpers.instances import make_instance


def files(tmp_path: Path, count: int) -> list[GroupInstance]:
    out = []
    for n in range(count):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(b"D")
        out.append(GroupInstance(f"1.2.{n}", "1.2", "1.2.0", str(path)))
    return out


def test_missing_files_are_named_by_path_and_a_file_uri_is_accepted(tmp_path: Path) -> None:
    present = files(tmp_path, 3)
    as_uri = GroupInstance("1.3", "1.2", "1.2.0", (tmp_path / "0.dcm").as_uri())
    gone = GroupInstance("1.4", "1.2", "1.2.0", str(tmp_path / "gone.dcm"))
    remote = GroupInstance("1.5", "1.2", "1.2.0", "http://elsewhere/x.dcm")
    assert missing_files([*present, as_uri]) == []
    assert missing_files([*present, gone, remote]) == [str(tmp_path / "gone.dcm"), remote.uri]
    require_files(present, "job x")  # nothing missing: no error


def test_the_error_names_at_most_ten_files_and_counts_the_rest(tmp_path: Path) -> None:
    gone = [GroupInstance(f"9.{n}", "1", "1", str(tmp_path / f"g{n}.dcm")) for n in range(12)]
    with pytest.raises(UsageError) as caught:
        require_files([*files(tmp_path, 1), *gone], "study 1.2 cannot be reprocessed")
    message = str(caught.value)
    assert message.startswith("study 1.2 cannot be reprocessed: 12 of 13 instance files are gone")
    assert str(tmp_path / "g9.dcm") in message and str(tmp_path / "g10.dcm") not in message
    assert "and 2 more" in message and "\n" not in message


def test_pipelines_all_one_or_a_clear_error() -> None:
    settings, _ = parse_settings("AET1", {"pipeline-lung": "PL", "pipeline-heart": "PH"})
    assert choose_pipelines(settings, "AET1", None) == [("lung", "PL"), ("heart", "PH")]
    assert choose_pipelines(settings, "AET1", "heart") == [("heart", "PH")]
    with pytest.raises(UsageError, match=r"AE title AET1 has no pipeline-brain .*lung, heart"):
        choose_pipelines(settings, "AET1", "brain")


def test_a_manual_group_has_new_job_ids_no_inputs_and_reason_manual(tmp_path: Path) -> None:
    args = dict(
        ae_title="AET1",
        group_by="(0020,000D)",
        group_key="1.2",
        patient_id="P",
        instances=files(tmp_path, 2),
        pipelines=[("lung", "PL")],
        priority="higher",
        now_ms=1_732_800_000_000,
    )
    a, b = manual_group(**args), manual_group(**args)  # type: ignore[arg-type]
    assert a.reason == "manual" and a.inputs == () and a.processor == "manual"
    assert a.jobs[0].job_id != b.jobs[0].job_id  # a manual job is always a new one
    assert a.jobs[0].name == "aet1-lung-20241128132000"
    assert (a.first_received_at, a.last_received_at) == (1_732_800_000_000,) * 2


def test_a_study_is_its_last_copy_of_each_instance_of_that_ae_title() -> None:
    items = [
        make_instance(received_at=1, study="1.2", sop="a", uri="/s/a1"),
        make_instance(received_at=2, study="1.2", sop="b"),
        make_instance(received_at=3, study="1.2", sop="a", uri="/s/a2"),
        make_instance(received_at=4, study="1.2 ", sop="c"),  # padded UID: same study
        make_instance(received_at=5, study="1.3", sop="d"),
        make_instance(received_at=6, study="1.2", sop="e", ae="OTHER"),
    ]
    records = [
        Record("t", 0, n, "k", 0, envelope(i, source="s", time_ms=0)) for n, i in enumerate(items)
    ]
    found = study_instances(records, "AET1", "1.2")
    assert [(i.sop_instance_uid, i.uri) for i in found][:1] == [("b", items[1].uri)]
    assert [i.sop_instance_uid for i in found] == ["b", "a", "c"]
    assert found[1].uri == "/s/a2"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "resubmit", "--kafka", "127.0.0.1:1"]) == 2
    assert "jobs resubmit needs a JOB_ID" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["studies", "reprocess", "1.2"])  # --ae is required
    assert caught.value.code == 2
