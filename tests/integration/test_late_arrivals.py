"""Late arrivals as versions end to end (issue 16): DCMTK storescu -> ``dicom-adapter run``.

One ``run`` process (SCP, processors, submitter, reclaimer) serves two AE titles with
timeout 5: ``AMEND`` (``lateArrivals: amend``, ``lateWindow: 60``) and ``PLAIN`` (the
default). Each gets a study of three series; the third series is sent 8 s after the
first two closed. ``AMEND`` writes ``group.updated`` version 2 with all instances and
one new job per pipeline -- submitted with a payload of every file, so the first
version's files were kept for it -- and ``PLAIN`` a second group, as always. Waits are
polls of the jobs topic; the only sleep paces the sender (the scripted 8 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.dicom import dcmtk, make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.waiting import free_port, wait_for
from pydicom.uid import generate_uid

from processors.jobnames import group_id
from streams.events import Envelope, GroupClosed, GroupUpdated, JobSubmitted
from streams.storage import sanitize_component

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PIPELINES = "        pipeline-lung: PLUNG\n        pipeline-heart: PHEART\n"


def config(path: Path, storage: Path, prefix: str, port: int) -> Path:
    path.write_text(
        "adapter_id: late\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
        "http:\n  port: 0\n"
        f"scp:\n  host: 127.0.0.1\n  port: {port}\n"
        "  watermark_percent: 100\n  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        "    - ae_title: AMEND\n      processorSettings:\n        timeout: 5\n"
        "        lateArrivals: amend\n        lateWindow: 60\n" + PIPELINES
        + "    - ae_title: PLAIN\n      processorSettings:\n        timeout: 5\n" + PIPELINES
    )  # fmt: skip
    return path


def events_of(bootstrap: str, topic: str) -> list[Envelope]:
    return [e for _, e in asyncio.run(read_events(bootstrap, topic, at_least=0, timeout_s=5))]


def groups(events: list[Envelope], ae: str) -> list[GroupClosed]:
    return [
        e.data
        for e in events
        if isinstance(e.data, GroupClosed) and e.data.ae_title == ae and e.data.jobs
    ]


def test_a_series_8_s_late_amends_the_group_with_lateArrivals_amend_only(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    if dcmtk("storescu") is None:
        pytest.fail("DCMTK storescu is required (apt-get install -y dcmtk)")
    prefix, port = unique_name("late"), free_port()
    cfg = config(tmp_path / "late.yaml", tmp_path / "storage", prefix, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    with (tmp_path / "run.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "run", "--config", str(cfg),
             "--kafka", kafka_bootstrap],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        echo = [dcmtk("echoscu") or "echoscu", "-aec", "AMEND", "127.0.0.1", str(port)]
        wait_for(
            lambda: (
                proc.poll() is None
                and subprocess.run(echo, capture_output=True, check=False).returncode == 0
            ),
            "the SCP answers C-ECHO",
            timeout_s=60,
        )
        study = generate_uid()
        series = [generate_uid() for _ in range(3)]
        sets = [
            [make_ct(patient_id="PAT-LATE", study_uid=study, series_uid=s, instance_number=i)
             for i in (1, 2)]
            for s in series
        ]  # fmt: skip
        early = write_instances(tmp_path / "early", sets[0] + sets[1])
        late = write_instances(tmp_path / "late", sets[2])
        for ae in ("AMEND", "PLAIN"):
            assert storescu(port, early, aec=ae).returncode == 0

        jobs_topic = f"{prefix}.jobs"
        first: dict[str, GroupClosed] = {}

        def both_closed() -> bool:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            evs = events_of(kafka_bootstrap, jobs_topic)
            first.update({ae: g[0] for ae in ("AMEND", "PLAIN") if (g := groups(evs, ae))})
            return len(first) == 2

        wait_for(both_closed, "the first groups closed", timeout_s=40)
        closed_at = max(g.last_received_at for g in first.values()) + 5_000
        time.sleep(max(0.0, (closed_at + 8_000) / 1000 - time.time()))  # the script: +8 s
        for ae in ("AMEND", "PLAIN"):
            assert storescu(port, late, aec=ae).returncode == 0

        def done() -> bool:
            evs = events_of(kafka_bootstrap, jobs_topic)
            updated = [g for g in groups(evs, "AMEND") if isinstance(g, GroupUpdated)]
            submitted = {e.data.job_id for e in evs if isinstance(e.data, JobSubmitted)}
            v2_jobs = {j.job_id for g in updated for j in g.jobs}
            return bool(updated) and v2_jobs <= submitted and len(groups(evs, "PLAIN")) >= 2

        wait_for(done, "version 2 submitted and the plain second group", timeout_s=40)
        events = events_of(kafka_bootstrap, jobs_topic)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "run.log").read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert "PAT-LATE" not in text, "PHI in the log"

    all_sops = {str(d.SOPInstanceUID) for s in sets for d in s}
    late_sops = {str(d.SOPInstanceUID) for d in sets[2]}
    amend = groups(events, "AMEND")
    assert len(amend) == 2
    v1, v2 = amend
    assert type(v1) is GroupClosed and isinstance(v2, GroupUpdated)
    assert {i.sop_instance_uid for i in v1.instances} == all_sops - late_sops
    assert v2.version == 2
    assert {i.sop_instance_uid for i in v2.instances} == all_sops
    assert set(v2.added) == late_sops
    assert v2.supersedes is not None
    first_input = v1.inputs[0]
    assert v2.supersedes.group_id == group_id("AMEND", first_input.partition, first_input.offset)
    assert v2.supersedes.job_ids == tuple(j.job_id for j in v1.jobs)
    assert [j.pipeline_name for j in v2.jobs] == ["lung", "heart"]
    # Version 2's jobs were staged with every file: version 1's were kept for it.
    v2_ids = {j.job_id for j in v2.jobs}
    staged = [
        {p.stem for p in Path(e.data.payload_uri).rglob("*.dcm")}
        for e in events
        if isinstance(e.data, JobSubmitted) and e.data.job_id in v2_ids
    ]
    expected = {sanitize_component(s) for s in all_sops}
    assert len(staged) >= 2 and all(files == expected for files in staged), staged
    plain = groups(events, "PLAIN")
    assert [type(g) for g in plain] == [GroupClosed, GroupClosed]
    assert {i.sop_instance_uid for i in plain[1].instances} == late_sops
    assert [e for e in events if e.type == "group.updated" and e.data.ae_title == "PLAIN"] == []  # type: ignore[union-attr]
