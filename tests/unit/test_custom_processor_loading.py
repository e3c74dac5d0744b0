"""Custom processors loaded as users configure them: ``package.module:Class`` and an entry
point of group ``dicom_adapter.processors`` (a real ``*.dist-info`` folder on sys.path).

Both are the docs' ten-line toy (docs/custom-processors.md): one job per instance. Each
is found by name, checked by ``config check`` (its ``validate_settings``), built as the
runtime builds processors, fed instances, and must submit jobs through the sink.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.instances import RecordingSink, make_instance, positioned
from reactivex.testing import TestScheduler

from processors.base import JobProcessor
from processors.config_check import check_processors
from processors.registry import ENTRY_POINT_GROUP, resolve_processor
from streams.errors import ConfigError

TOY = textwrap.dedent('''
    from processors.base import JobProcessor
    from streams.errors import ConfigError

    class OneJobPerInstance(JobProcessor):
        """Every instance at once becomes a job of the AE title's pipeline."""

        name = "One Job Per Instance"

        @classmethod
        def validate_settings(cls, ae_title, raw, *, where=None):
            if "pipeline" not in raw:
                raise ConfigError([f"{where} ({ae_title}): processorSettings.pipeline: missing"])
            return []

        def handle_instance(self, instance, position):
            self.submit_pipeline_job(
                f"{self.ae_title}-{instance.sop_instance_uid}",
                self.processor_settings["pipeline"], "normal", [instance], inputs=[position],
            )
''')


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A module with the toy on sys.path, and an installed distribution declaring it as an
    entry point; yields ``(module:Class, entry point name)``."""
    module = f"toy_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(TOY, encoding="utf-8")
    ep_name = f"one-job-{uuid.uuid4().hex[:6]}"
    info = tmp_path / f"{module}_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{ep_name} = {module}:OneJobPerInstance\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{module}:OneJobPerInstance", ep_name
    for name in [m for m in sys.modules if m.startswith(module)]:
        del sys.modules[name]


@pytest.mark.parametrize("form", ["dotted", "entry point"])
def test_a_loaded_processor_receives_instances_and_submits_jobs(
    plugin: tuple[str, str], form: str
) -> None:
    dotted, ep_name = plugin
    name = dotted if form == "dotted" else ep_name
    cls = resolve_processor(name)
    assert issubclass(cls, JobProcessor) and cls.__name__ == "OneJobPerInstance"
    sched = TestScheduler()
    sink = RecordingSink(sched)
    processor = cls("TOY", {"pipeline": "PIPE-1"}, sink, sched)
    items = positioned(
        [make_instance(received_at=t, ae="TOY", sop=f"1.{t}") for t in (1, 2)], partition=3
    )
    items.append((3, 9, make_instance(received_at=3, ae="OTHER")))
    for item in items:
        processor.on_next(item)
    assert [(r.processor, r.inputs[0].offset) for r in sink.records] == [
        ("One Job Per Instance", 0), ("One Job Per Instance", 1),
    ]  # fmt: skip
    assert [r.jobs[0].pipeline_id for r in sink.records] == ["PIPE-1", "PIPE-1"]
    assert [r.jobs[0].name for r in sink.records] == ["toy-1-1", "toy-1-2"]
    assert processor.counters.not_supported == 1


@pytest.mark.parametrize("form", ["dotted", "entry point"])
def test_config_check_runs_the_processors_own_validation(
    plugin: tuple[str, str], form: str
) -> None:
    dotted, ep_name = plugin
    name = dotted if form == "dotted" else ep_name
    entries = [
        {"ae_title": "GOOD", "processor": name, "processorSettings": {"pipeline": "P"}},
        {"ae_title": "BAD", "processor": name, "processorSettings": {}},
    ]
    found = check_processors({"scp": {"ae_titles": entries}})
    assert found.processors["GOOD"].__name__ == "OneJobPerInstance"
    assert found.problems == ["scp.ae_titles[1] (BAD): processorSettings.pipeline: missing"]


def test_an_unknown_entry_point_is_one_clear_line(plugin: tuple[str, str]) -> None:
    _, ep_name = plugin
    with pytest.raises(ConfigError) as info:
        resolve_processor(ep_name + "x")
    [line] = info.value.problems
    assert f"did you mean {ep_name!r}?" in line and ENTRY_POINT_GROUP in line
