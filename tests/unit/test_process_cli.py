"""``dicom-adapter process`` refuses bad processor configuration with exit 2, one line
per problem, before it touches Kafka (the address below has nothing listening)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reactivex.testing import TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.cli import main
from processors.contracts import ProcessorContext
from processors.runtime import build_processors
from streams.config import load_config
from streams.errors import ConfigError
from tests.helpers.instances import RecordingSink

NOWHERE = "127.0.0.1:9"  # discard port: a connection attempt would fail, not hang


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides from the developer's shell must not change what these tests check."""
    for name in list(os.environ):
        if name.startswith("DICOM_ADAPTER_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def config(tmp_path: Path, ae_titles: str) -> Path:
    path = tmp_path / "adapter.yaml"
    path.write_text(f"storage: {tmp_path}\nhttp:\n  port: 0\nscp:\n  ae_titles:{ae_titles}")
    return path


def run(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str]]:
    code = main(["process", "--config", str(path), "--kafka", NOWHERE])
    _, err = capsys.readouterr()
    return code, err.splitlines()


def test_no_ae_titles_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, config(tmp_path, " []\n"))
    assert code == 2
    assert len(err) == 1 and "scp.ae_titles: empty" in err[0]


def test_unknown_processor_names_the_ae_title(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    entry = "\n    - ae_title: CT1\n      processor: no.such.module:Nope\n"
    code, err = run(capsys, config(tmp_path, entry))
    assert code == 2
    assert "scp.ae_titles[0] (CT1): processor" in err[0]
    assert "no.such.module" in err[0]
    assert not any("Traceback" in line for line in err)


def test_settings_without_a_pipeline_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    entry = "\n    - ae_title: CT1\n      processorSettings:\n        timeout: 30\n"
    code, err = run(capsys, config(tmp_path, entry))
    assert code == 2
    assert any("CT1" in line and "pipeline-" in line for line in err), err


async def test_build_processors_gives_each_ae_title_its_processor(tmp_path: Path) -> None:
    entries = (
        "\n    - ae_title: CT1\n      processorSettings:\n        pipeline-a: p1\n"
        "    - ae_title: CT2\n      processorSettings:\n        groupBy: Patient\n"
        "        pipeline-b: p2\n"
    )
    loaded = load_config(config(tmp_path, entries), env={})
    scheduler = TestScheduler()
    built = build_processors(loaded, RecordingSink(scheduler), scheduler)
    assert list(built) == ["CT1", "CT2"]
    ct2 = built["CT2"]
    assert isinstance(ct2, AeTitleJobProcessor) and ct2.group_by == "(0010,0020)"
    # What the runtime gives every processor: the grace at start, "not caught up" for
    # each partition it is assigned (Kafka reports caught-up partitions itself).
    await ct2.start(ProcessorContext(storage=tmp_path, grace_ms=250))
    assert ct2.window.state.grace_ms == 250
    ct2.partition_caught_up(0, False)
    assert not ct2.window.state.is_caught_up(0)


def test_a_class_that_is_not_a_job_processor_is_a_config_error(tmp_path: Path) -> None:
    entry = "\n    - ae_title: CT1\n      processor: collections:OrderedDict\n"
    loaded = load_config(config(tmp_path, entry), env={})
    scheduler = TestScheduler()
    with pytest.raises(ConfigError) as caught:
        build_processors(loaded, RecordingSink(scheduler), scheduler)
    assert caught.value.problems == [
        "scp.ae_titles[0] (CT1): processor: 'collections:OrderedDict' is "
        "collections.OrderedDict, not a subclass of processors.base.JobProcessor; point it "
        "at a job processor class"
    ]
