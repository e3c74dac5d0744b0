"""Custom processors in the real ``dicom-adapter process`` on a real broker.

One AE title names the docs' toy processor as ``package.module:Class``, another by an
entry point of group ``dicom_adapter.processors`` declared by an installed distribution
(a real ``*.dist-info`` folder on ``PYTHONPATH``). Instances published for both AE titles
must become one job per instance on the jobs ledger, from the right processor.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.processor import instance, job_groups, publish_instances, start_process, stop_process
from helpers.waiting import wait_for_ledger

from processors.registry import ENTRY_POINT_GROUP
from streams.kafka import EventPublisher, ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOY = textwrap.dedent('''
    from processors.base import JobProcessor

    class OneJobPerInstance(JobProcessor):
        """Every instance at once becomes a job of the AE title's pipeline."""

        name = "One Job Per Instance"

        def handle_instance(self, instance, position):
            self.submit_pipeline_job(
                f"{self.ae_title}-{instance.sop_instance_uid}",
                self.processor_settings["pipeline"], "normal", [instance], inputs=[position],
            )
''')


def _plugin(folder: Path) -> None:
    (folder / "toy_processors.py").write_text(TOY, encoding="utf-8")
    info = folder / "toy_processors-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-processors\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\none-job = toy_processors:OneJobPerInstance\n"
    )


def _config(path: Path, prefix: str, storage: Path) -> Path:
    path.write_text(
        f"adapter_id: custom-test\nstorage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "http:\n  port: 0\n"
        "scp:\n  ae_titles:\n"
        "    - ae_title: DOTTED\n      processor: toy_processors:OneJobPerInstance\n"
        "      processorSettings: {pipeline: PIPE-DOTTED}\n"
        "    - ae_title: ENTRY\n      processor: one-job\n"
        "      processorSettings: {pipeline: PIPE-ENTRY}\n"
    )
    return path


async def test_dotted_path_and_entry_point_processors_submit_jobs(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _plugin(plugins)
    prefix = unique_name("custom")
    await ensure_topics(kafka_bootstrap, {f"{prefix}.instances": 2, f"{prefix}.jobs": 2})
    config = _config(tmp_path / "adapter.yaml", prefix, tmp_path / "storage")
    pythonpath = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH")) if p)
    log = tmp_path / "process.log"
    proc = await start_process(config, kafka_bootstrap, env={"PYTHONPATH": pythonpath}, log=log)
    try:
        now = int(time.time() * 1000)
        items = [
            instance(ae=ae, patient="P", study="1.2.9", sop=f"1.2.9.{ae}.{n}", received_at=now + n)
            for ae in ("DOTTED", "ENTRY")
            for n in range(2)
        ]
        async with EventPublisher(kafka_bootstrap) as publisher:
            await publish_instances(publisher, f"{prefix}.instances", items)

        def alive() -> None:
            assert proc.returncode is None, f"process died: {log.read_text()[-2000:]}"

        records = await wait_for_ledger(
            kafka_bootstrap, f"{prefix}.jobs", lambda rs: len(job_groups(rs)) >= 4, alive=alive
        )
    finally:
        code = await stop_process(proc)
    assert code == 0, log.read_text()[-2000:]
    groups = job_groups(records)
    seen = sorted(
        (g.ae_title, g.processor, g.jobs[0].pipeline_id, g.instances[0].sop_instance_uid)
        for g in groups
    )
    assert seen == [
        ("DOTTED", "One Job Per Instance", "PIPE-DOTTED", "1.2.9.DOTTED.0"),
        ("DOTTED", "One Job Per Instance", "PIPE-DOTTED", "1.2.9.DOTTED.1"),
        ("ENTRY", "One Job Per Instance", "PIPE-ENTRY", "1.2.9.ENTRY.0"),
        ("ENTRY", "One Job Per Instance", "PIPE-ENTRY", "1.2.9.ENTRY.1"),
    ]
    assert "Traceback" not in log.read_text()
