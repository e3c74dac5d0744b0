"""`events` and `broker` command lines: usage errors and the no-PHI event lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.cli import main
from processors.commands.events import human_line
from streams.events import (
    GroupClosed,
    GroupInstance,
    InputOffset,
    InstanceReceived,
    JobSpec,
    envelope,
)

SECRET_PATIENT = "PAT-SECRET-4711"


@pytest.fixture
def no_kafka_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data/kafka/broker.json of a local run
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DICOM_ADAPTER_CONFIG", raising=False)
    monkeypatch.delenv("DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS", raising=False)


@pytest.mark.usefixtures("no_kafka_env")
def test_events_without_a_kafka_address_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["events"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--kafka" in err[0] and "KAFKA_BOOTSTRAP_SERVERS" in err[0]


def test_broker_start_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "start", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


def test_broker_fetch_rejects_a_version_that_is_not_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["broker", "fetch", "--version", "../../etc"]) == 2
    assert "is not a Kafka version" in capsys.readouterr().err


def test_events_topic_choice_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["events", "--topic", "everything"])
    assert caught.value.code == 2


def instance(patient: str = SECRET_PATIENT) -> InstanceReceived:
    return InstanceReceived(
        called_ae="CLARA-CT",
        calling_ae="MODALITY1",
        calling_host="10.0.0.5",
        association_id="a-1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.3.4.5",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient,
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        received_at=1_732_800_000_123,
        uri="file:///data/1.2.3.4.5.dcm",
        size=1234,
    )


def test_human_lines_carry_no_patient_id() -> None:
    received = envelope(instance(), source="adapter-1", time_ms=1_732_800_000_123)
    closed = envelope(
        GroupClosed(
            processor="aetitle",
            ae_title="CLARA-CT",
            group_by="Patient",
            group_key=SECRET_PATIENT,
            reason="timeout",
            first_received_at=1,
            last_received_at=2,
            instances=(GroupInstance("1.2.3.4.5", "1.2.3", "1.2.3.4", "file:///x"),),
            inputs=(InputOffset(0, 7),),
            jobs=(JobSpec("job-1", "CLARA-CT-lung", "lung", "8abf", "normal"),),
            patient_id=SECRET_PATIENT,
        ),
        source="adapter-1",
        time_ms=1_732_800_005_000,
    )
    line = human_line("dicom.instances", 3, 17, received)
    assert line.startswith("2024-11-28T13:20:00.123Z dicom.instances[3]@17 instance.received")
    assert "ae=CLARA-CT" in line and "sop=1.2.3.4.5" in line
    closed_line = human_line("dicom.jobs", 0, 1, closed)
    assert "group.closed" in closed_line and "jobs=job-1" in closed_line
    assert SECRET_PATIENT not in line + closed_line
