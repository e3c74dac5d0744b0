"""``dicom-adapter config check FILE``: a summary and exit 0, or one line per problem and 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processors.cli import main

REPO = Path(__file__).resolve().parents[2]
SCENARIO1 = REPO / "docs" / "examples" / "scenario1.yaml"
SCENARIO2 = REPO / "docs" / "examples" / "scenario2.yaml"
BAD = REPO / "tests" / "data" / "bad-config.yaml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides from the developer's shell must not change what these tests check."""
    for name in list(os.environ):
        if name.startswith("DICOM_ADAPTER_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["config", "check", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_scenario_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(SCENARIO1))
    assert code == 0
    assert err == []
    assert out[0] == f"config OK: {SCENARIO1}"
    assert "adapter: adapter-1" in out
    assert any(
        line.startswith("kafka: embedded broker (kafka.bootstrap_servers not set) (PLAINTEXT)")
        for line in out
    )
    assert "open: DICOM without TLS on 0.0.0.0:11112" in "\n".join(out)
    assert any(line.startswith("scp: 0.0.0.0:11112 ") for line in out)
    i = out.index(
        "AE title CLARA-CT: processor aetitle, groupBy (0010,0020) PatientID, "
        "priority normal, timeout 60 s"
    )
    assert out[i + 1 : i + 4] == [
        "  pipeline lung: 8abf244aff7647989d4f6b3987a85759",
        "  pipeline heart: c5f996a71e1d4959bd6a2c8cf7130f88",
        "  pipeline breast: eb48c784ef20425580db7d46a30829b2",
    ]


def test_scenario_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(SCENARIO2))
    assert code == 0
    assert err == []
    assert any(line.startswith("kafka: embedded broker") for line in out)
    i = out.index(
        "AE title CLARA-MG: processor aetitle, groupBy (0020,000D) StudyInstanceUID, "
        "priority higher, timeout 5 s"
    )
    assert out[i + 1 :] == ["  pipeline breast: 8abf244aff7647989d4f6b3987a85759"]


def test_bad_config_one_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(BAD))
    assert code == 2
    assert out == []
    assert len(err) == 5, err
    for line in err:
        assert line.startswith("config: scp.ae_titles[0] (BAD-AE): processorSettings")
    keys = [line.split(": ")[2] for line in err]
    assert keys == [
        "processorSettings.timeout",
        "processorSettings.priority",
        "processorSettings.groupBy",
        "processorSettings.colour",
        "processorSettings",
    ]
    assert "'abc'" in err[0]
    assert "'SonicSpeed' is not one of lower, normal, higher, immediate" in err[1]
    assert "'0000000'" in err[2]
    assert "unknown setting" in err[3]
    assert "No pipeline defined for AE Title BAD-AE" in err[4]


def test_timeout_warning_and_env_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "scp:\n  ae_titles:\n    - ae_title: CT\n      processorSettings:\n"
        "        timeout: 1\n        PIPELINE-Lung: abc\n"
    )
    monkeypatch.setenv("DICOM_ADAPTER_SCP__PORT", "4104")
    code, out, err = run(capsys, str(path))
    assert code == 0
    assert any(line.startswith("scp: 0.0.0.0:4104 ") for line in out)
    assert "AE title CT: processor aetitle, groupBy (0020,000D) StudyInstanceUID, " in out[-2]
    assert out[-2].endswith("timeout 5 s")
    assert out[-1] == "  pipeline Lung: abc"
    assert err == [
        "warning: scp.ae_titles[0] (CT): processorSettings.timeout: 1 is below the minimum "
        "of 5 seconds; using 5"
    ]
    code, out, _ = run(capsys, "--no-env", str(path))
    assert any(line.startswith("scp: 0.0.0.0:11112 ") for line in out)


def test_structure_and_settings_problems_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "scp:\n  port: 99999\n  ae_titles:\n"
        "    - ae_title: CT\n      procesor: x\n      processorSettings: {priority: fast}\n"
        "    - ae_title: MR\n      processor: no_such_module_q:Proc\n"
    )
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert len(err) == 5, err
    assert err[0].startswith("config: scp.port: 99999")
    assert err[1].startswith("config: scp.ae_titles[0] (CT): procesor: unknown key")
    assert err[2].startswith("config: scp.ae_titles[0] (CT): processorSettings.priority: 'fast'")
    assert err[3].startswith("config: scp.ae_titles[0] (CT): processorSettings: No pipeline")
    assert err[4].startswith("config: scp.ae_titles[1] (MR): processor: 'no_such_module_q:Proc'")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(tmp_path / "none.yaml"))
    assert (code, out) == (2, [])
    assert err == [f"config: config file {tmp_path / 'none.yaml'}: not found; check the path"]


def test_empty_ae_titles_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"adapter_id": "a2"}')
    code, out, err = run(capsys, str(path))
    assert code == 0
    assert "adapter: a2" in out
    assert len(err) == 1 and err[0].startswith("warning: scp.ae_titles is empty")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "check"])
    assert info.value.code == 2
    assert "FILE" in capsys.readouterr().err


def test_as_a_module_in_a_subprocess() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER_")}
    bad = subprocess.run(
        [sys.executable, "-m", "processors.cli", "config", "check", str(BAD)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 5
    assert "Traceback" not in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "processors.cli", "config", "check", str(SCENARIO1)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("config OK: ")


def _write(tmp_path, group_by: str, partitions: int):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(
        f"kafka:\n  partitions: {partitions}\n"
        "scp:\n  ae_titles:\n    - ae_title: CT\n      processorSettings:\n"
        f"        groupBy: '{group_by}'\n        pipeline-x: P\n"
    )
    return path


def test_a_group_by_tag_not_nested_in_a_patient_is_repartitioned(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["config", "check", str(_write(tmp_path, "0008,1010", 12))]) == 0
    out = capsys.readouterr().out
    assert "groups span patients: repartitioned through dicom.rekeyed.CT" in out
    assert main(["config", "check", str(_write(tmp_path, "Series", 12))]) == 0
    assert "repartitioned" not in capsys.readouterr().out


def test_the_summary_names_export_destinations_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "scp: {ae_titles: [{ae_title: CT, processorSettings: {pipeline-a: x}}]}\n"
        "export:\n  destinations:\n"
        "    - {kind: dicom, name: pacs, ae_title: PACS, host: pacs.local, port: 104}\n"
        "    - kind: dicomweb\n      name: archive\n      url: https://u:pw-xyzzy@archive/dicom-web\n"
        "      auth: {kind: bearer, token: token-xyzzy}\n"
    )
    code, out, _err = run(capsys, str(path))
    assert code == 0
    assert "export: 2 destination(s), max 5 attempts, batches of 100" in out
    assert "  destination pacs: C-STORE to PACS@pacs.local:104 as CT" in out
    assert "  destination archive: STOW-RS to https://u:***@archive/dicom-web (auth bearer)" in out
    assert "xyzzy" not in "\n".join(out)  # neither the password nor the token
