"""``dicom-adapter jobs`` rendering and usage errors (no broker needed)."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from processors.cli import main
from processors.commands.jobs import print_job, print_list
from processors.submit import fold
from streams.events import GroupInstance, JobFailed, JobSubmitted
from tests.helpers.jobs import env, group_closed

KEY = "AET1/PATIENT-SECRET"


def _ledger():  # type: ignore[no-untyped-def]
    files = [GroupInstance("1.2.1", "1.2", "1.2.0", "/s/AET1/1.2/1.2.0/1.2.1.dcm")]
    gc = group_closed(files, patient="PATIENT-SECRET", group_key="PATIENT-SECRET",
                      jobs=[("job-a", "immediate"), ("job-b", "lower")])  # fmt: skip
    submitted = JobSubmitted(
        "job-a", "n", "AET1", "p0", "pipeline-0", "immediate", "/s/payloads/job-a", (), 2, "plat-1"
    )
    return fold(
        [
            (KEY, env(gc, 1_700_000_000_000)),
            (
                KEY,
                env(JobFailed("job-a", 1, "HTTP 503", True, 1_700_000_001_000), 1_700_000_000_500),
            ),
            (KEY, env(submitted, 1_700_000_002_000)),
            (KEY, env(JobFailed("job-b", 1, "HTTP 400: nope", False), 1_700_000_000_700)),
        ]
    )


def test_list_shows_state_attempts_priority_and_timings_without_phi() -> None:
    out = io.StringIO()
    print_list(_ledger(), out, as_json=False, state=None)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["JOB", "ID", "STATE"]
    a = next(line for line in lines if line.startswith("job-a"))
    assert "submitted" in a and "immediate" in a and " 2 " in a and "2.0s" in a
    b = next(line for line in lines if line.startswith("job-b"))
    assert "dead" in b and "lower" in b
    assert "PATIENT-SECRET" not in out.getvalue()


def test_list_json_and_state_filter() -> None:
    out = io.StringIO()
    print_list(_ledger(), out, as_json=True, state="dead")
    rows = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["job_id"], r["state"], r["attempts"]) for r in rows] == [("job-b", "dead", 1)]
    assert rows[0]["last_error"] == "HTTP 400: nope"


def test_show_has_the_timeline() -> None:
    ledger = _ledger()
    job = ledger.get("job-a")
    assert job is not None
    out = io.StringIO()
    print_job(job, out, as_json=False)
    text = out.getvalue()
    assert "platform job id  plat-1" in text
    assert "job.failed attempt=1 HTTP 503" in text and "job.submitted attempt=2" in text
    assert "PATIENT-SECRET" not in text
    out = io.StringIO()
    print_job(job, out, as_json=True)
    shown = orjson.loads(out.getvalue())
    assert [h["event"] for h in shown["history"]] == ["group.closed", "job.failed", "job.submitted"]
    assert shown["instances"][0]["sop_instance_uid"] == "1.2.1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["jobs", "show"], "jobs show needs a JOB_ID"),
        (["jobs", "retry"], "jobs retry needs a JOB_ID"),
        (["jobs", "list", "x"], "jobs list takes no JOB_ID"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_submit_without_kafka_is_a_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data/kafka/broker.json of a local run
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DICOM_ADAPTER_CONFIG", raising=False)
    assert main(["submit"]) == 2
    err = capsys.readouterr().err
    assert "no Kafka address" in err and err.count("\n") == 1


def test_submit_http_without_url_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DICOM_ADAPTER_CONFIG", raising=False)
    config = tmp_path / "adapter.yaml"
    config.write_text("submitter:\n  kind: http\n")
    assert main(["submit", "--config", str(config), "--kafka", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "submitter.url" in err and "Traceback" not in err


def test_json_hides_patient_identifiers_unless_show_phi() -> None:
    job = _ledger().get("job-a")
    assert job is not None
    for show in (print_job, print_list):
        out = io.StringIO()
        if show is print_job:
            print_job(job, out, as_json=True)
        else:
            print_list(_ledger(), out, as_json=True, state=None)
        text = out.getvalue()
        assert "PATIENT-SECRET" not in text and "<redacted>" in text, text
    out = io.StringIO()
    print_job(job, out, as_json=True, show_phi=True)
    shown = orjson.loads(out.getvalue())
    assert (shown["group_key"], shown["key"]) == ("PATIENT-SECRET", KEY)


def test_redaction_keeps_uids_and_hashed_keys() -> None:
    from processors.redact import REDACTED, redact_data, redact_envelope
    from streams.events import RecordKeys

    hashed = RecordKeys()("AET1", "PATIENT-SECRET")
    study = {"group_by": "0020000D", "group_key": "1.2.3", "key": hashed, "patient_id": ""}
    assert redact_data(study) == study
    patient = {"group_by": "00100020", "group_key": "P-1", "patient_id": "P-1", "key": "A/P-1"}
    assert redact_data(patient) == {
        "group_by": "00100020", "group_key": REDACTED, "patient_id": REDACTED, "key": REDACTED,
    }  # fmt: skip
    received = {
        "type": "instance.received",
        "data": {"patient_id": "P-1", "tags": {"00100010": "DOE^J"}},
    }
    assert redact_envelope(received)["data"] == {
        "patient_id": REDACTED,
        "tags": {"00100010": REDACTED},
    }
