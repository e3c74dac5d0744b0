"""The seed's scenarios end to end: DCMTK storescu -> ``dicom-adapter run`` -> Kafka.

One ``run`` process (SCP, processors, submitter, reclaimer) against the session's real
broker, with real 5 s timeouts. Every wait is a poll of the jobs topic with a deadline;
the only sleeps pace the *sending* side, as the seed's timelines require.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.dicom import dcmtk, make_ct, storescu, write_instances
from helpers.kafka import read_events
from helpers.waiting import free_port
from pydicom.uid import generate_uid

from streams.events import Envelope, GroupClosed, JobSubmitted
from streams.storage import sanitize_component

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AE = "CLARA"
TIMEOUT_MS = 5_000


def _config(path: Path, storage: Path, prefix: str, port: int, settings: str) -> Path:
    path.write_text(
        "adapter_id: e2e\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
        "http:\n  port: 0\n"
        "scp:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  watermark_percent: 100\n"
        "  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processorSettings:\n"
        + "".join(f"        {line}\n" for line in settings.splitlines())
    )
    return path


class Adapter:
    """A running ``dicom-adapter run`` and what it wrote."""

    def __init__(self, bootstrap: str, prefix: str, port: int, storage: Path) -> None:
        self.bootstrap = bootstrap
        self.jobs_topic = f"{prefix}.jobs"
        self.port = port
        self.storage = storage

    def send(self, tmp: Path, datasets: list[object], name: str) -> None:
        folder = tmp / name
        files = write_instances(folder, datasets)  # type: ignore[arg-type]
        result = storescu(self.port, files, aec=AE)
        assert result.returncode == 0, result.stderr

    def jobs(
        self, predicate: Callable[[list[Envelope]], bool], timeout_s: float = 40
    ) -> list[Envelope]:
        deadline = time.monotonic() + timeout_s
        events: list[Envelope] = []
        while time.monotonic() < deadline:
            events = [
                env
                for _, env in asyncio.run(
                    read_events(self.bootstrap, self.jobs_topic, at_least=0, timeout_s=5)
                )
            ]
            if predicate(events):
                return events
            time.sleep(0.5)  # poll interval, not an assertion
        raise AssertionError(f"jobs topic never satisfied the condition; last: {events}")


def _of(events: list[Envelope], kind: str) -> list[Envelope]:
    return [e for e in events if e.type == kind]


def _groups_with_jobs(events: list[Envelope]) -> list[tuple[Envelope, GroupClosed]]:
    out = []
    for env in _of(events, "group.closed"):
        assert isinstance(env.data, GroupClosed)
        if env.data.jobs:
            out.append((env, env.data))
    return out


@pytest.fixture
def adapter(
    request: pytest.FixtureRequest,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[Callable[[str], Adapter]]:
    if dcmtk("storescu") is None:
        pytest.fail("DCMTK storescu is required (apt-get install -y dcmtk)")
    procs: list[subprocess.Popen[str]] = []
    stack = contextlib.ExitStack()

    def start(settings: str) -> Adapter:
        prefix = unique_name("e2e")
        port = free_port()
        storage = tmp_path / "storage"
        config = _config(tmp_path / "config.yaml", storage, prefix, port, settings)
        log = stack.enter_context((tmp_path / "run.log").open("w"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "run", "--config", str(config),
             "--kafka", kafka_bootstrap],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ready when the SCP answers C-ECHO
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            echo = subprocess.run(
                [dcmtk("echoscu") or "echoscu", "-aec", AE, "127.0.0.1", str(port)],
                capture_output=True, check=False,
            )  # fmt: skip
            if echo.returncode == 0:
                return Adapter(kafka_bootstrap, prefix, port, storage)
            time.sleep(0.2)
        raise AssertionError("dicom-adapter run never answered C-ECHO")

    with stack:
        yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in (tmp_path / "run.log").read_text()


def test_scenario_2_three_studies_in_one_association_make_three_jobs(
    adapter: Callable[[str], Adapter], tmp_path: Path
) -> None:
    run = adapter("priority: higher\npipeline-breast: 8abf244aff7647989d4f6b3987a85759")
    studies = {name: generate_uid() for name in "ABC"}
    datasets = [
        make_ct(patient_id="PX", study_uid=uid, instance_number=i)
        for uid in studies.values()
        for i in (1, 2)
    ]
    run.send(tmp_path, datasets, "abc")

    events = run.jobs(lambda evs: len(_of(evs, "job.submitted")) >= 3)
    groups = _groups_with_jobs(events)
    assert sorted(g.group_key for _, g in groups) == sorted(studies.values())
    for env, group in groups:
        assert len(group.instances) == 2
        assert [(j.pipeline_name, j.priority) for j in group.jobs] == [("breast", "higher")]
        # Closed once quiet for the timeout, not before, and not long after.
        assert group.last_received_at + TIMEOUT_MS <= env.time <= group.last_received_at + 9_000
    submitted = _of(events, "job.submitted")
    assert len({e.data.job_id for e in submitted if isinstance(e.data, JobSubmitted)}) == 3


def test_scenario_2_four_associations_within_the_timeout_make_one_job(
    adapter: Callable[[str], Adapter], tmp_path: Path
) -> None:
    run = adapter("priority: higher\npipeline-breast: 8abf244aff7647989d4f6b3987a85759")
    study = generate_uid()
    # The seed's timeline: T1, T1+4, T2+3, T3+1 - each gap shorter than the 5 s timeout.
    for n, gap in enumerate((0, 4, 3, 1), start=1):
        time.sleep(gap)  # paces the sender; the assertions below poll
        run.send(tmp_path, [make_ct(patient_id="PY", study_uid=study, instance_number=n)], f"i{n}")
    last_sent = time.monotonic()

    # A wrong split would close a first part earlier, so once the timeout (plus grace
    # and margin) has passed since the last instance, every group there is has closed.
    events = run.jobs(
        lambda evs: bool(_of(evs, "job.submitted")) and time.monotonic() > last_sent + 8
    )
    groups = _groups_with_jobs(events)
    assert len(groups) == 1, groups
    assert len(groups[0][1].instances) == 4
    assert len(_of(events, "job.submitted")) == 1


def test_scenario_1_five_studies_of_one_patient_make_three_jobs_with_payloads(
    adapter: Callable[[str], Adapter], tmp_path: Path
) -> None:
    run = adapter(
        "groupBy: Patient\npriority: normal\ntimeout: 5\n"
        "pipeline-lung: 8abf244aff7647989d4f6b3987a85759\n"
        "pipeline-heart: c5f996a71e1d4959bd6a2c8cf7130f88\n"
        "pipeline-breast: eb48c784ef20425580db7d46a30829b2"
    )
    studies = [generate_uid() for _ in range(5)]
    sops: set[str] = set()
    for n, study in enumerate(studies):  # one association per study
        ds = [make_ct(patient_id="PATIENT-X", study_uid=study, instance_number=i) for i in (1, 2)]
        sops |= {str(d.SOPInstanceUID) for d in ds}
        run.send(tmp_path, ds, f"study{n}")

    events = run.jobs(
        lambda evs: len(_of(evs, "job.submitted")) >= 3 and bool(_of(evs, "instances.removed"))
    )
    groups = _groups_with_jobs(events)
    assert len(groups) == 1
    group = groups[0][1]
    assert [j.pipeline_name for j in group.jobs] == ["lung", "heart", "breast"]
    assert {i.sop_instance_uid for i in group.instances} == sops
    submitted = [e.data for e in _of(events, "job.submitted") if isinstance(e.data, JobSubmitted)]
    assert len(submitted) == 3
    for job in submitted:
        payload = Path(job.payload_uri)
        files = {p.stem for p in payload.rglob("*.dcm")}
        assert files == {sanitize_component(s) for s in sops}, job
        assert {p.parent.parent.name for p in payload.rglob("*.dcm")} == {
            sanitize_component(s) for s in studies
        }
    # The incoming folder of the AE title is emptied once every job is submitted.
    incoming = run.storage / AE
    leftover = [p for p in incoming.rglob("*") if p.is_file()] if incoming.exists() else []
    assert leftover == []
