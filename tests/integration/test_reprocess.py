"""``jobs resubmit`` and ``studies reprocess`` as the real CLI on a real broker (issue 16).

Instance files are on disk, the instances log and the ledger hold what an SCP and a
processor wrote; the commands write a NEW job (new id, ``reason: "manual"``) with the
instances; when a file is gone they exit 2 with one line naming it and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import orjson
import pytest

from streams.events import GroupClosed, InstanceReceived, RecordKeys, encode, schema_path
from streams.kafka import EventPublisher, ensure_topics, read_topic
from tests.helpers.jobs import env, group_closed, write_instances
from tests.helpers.processor import REPO

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AE = "AET1"
PATIENT = "PAT-REPROCESS"


def config(path: Path, prefix: str, storage: Path) -> Path:
    path.write_text(
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 1\n"
        "scp:\n  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processorSettings:\n"
        "        priority: higher\n"
        "        pipeline-lung: PLUNG\n"
        "        pipeline-heart: PHEART\n"
    )
    return path


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "processors.cli",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def manual_groups(records: list) -> list[GroupClosed]:  # type: ignore[type-arg]
    return [
        r.envelope.data
        for r in records
        if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.reason == "manual"
    ]


async def test_resubmit_and_reprocess_make_new_jobs_or_name_missing_files(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("manual")
    storage = tmp_path / "storage"
    cfg = config(tmp_path / "adapter.yaml", prefix, storage)
    await ensure_topics(kafka_bootstrap, {f"{prefix}.instances": 1, f"{prefix}.jobs": 1})
    files = write_instances(storage, ae=AE, study="1.2.3.16", series=("1.2.3.16.1",), per_series=3)
    key = RecordKeys()(AE, PATIENT)
    instances = [
        InstanceReceived(
            AE,
            "MOD",
            "127.0.0.1",
            "a1",
            "1.2.840.10008.5.1.4.1.1.2",
            f.sop_instance_uid,
            "1.2.840.10008.1.2.1",
            PATIENT,
            f.study_instance_uid,
            f.series_instance_uid,
            1_700_000_000_000 + n,
            f.uri,
            64,
        )
        for n, f in enumerate(files)
    ]
    original = group_closed(files, ae=AE, patient=PATIENT, jobs=[("job-original", "normal")])
    async with EventPublisher(kafka_bootstrap) as publisher:
        await publisher.publish_many(
            f"{prefix}.instances", [(key, env(i, 1_700_000_000_000)) for i in instances]
        )
        await publisher.publish(f"{prefix}.jobs", key, env(original))
    common = ("--config", str(cfg), "--kafka", kafka_bootstrap)

    code, out, err = await cli("jobs", "resubmit", "job-original", "--pipeline", "heart", *common)
    assert code == 0, err
    code, out, err = await cli("studies", "reprocess", "1.2.3.16", "--ae", AE, *common)
    assert code == 0, err
    assert "3 instances" in out and PATIENT not in out + err

    records = await read_topic(kafka_bootstrap, f"{prefix}.jobs")
    schema = json.loads(schema_path("group.closed").read_text())
    for record in records:
        jsonschema.validate(orjson.loads(encode(record.envelope)), schema)
    resubmitted, reprocessed = manual_groups(records)
    assert [(j.pipeline_name, j.pipeline_id, j.priority) for j in resubmitted.jobs] == [
        ("heart", "PHEART", "higher")
    ]
    assert resubmitted.instances == original.instances and resubmitted.inputs == ()
    assert resubmitted.jobs[0].job_id != "job-original"
    assert [(j.pipeline_name, j.pipeline_id) for j in reprocessed.jobs] == [
        ("lung", "PLUNG"),
        ("heart", "PHEART"),
    ]
    assert [i.uri for i in reprocessed.instances] == [f.uri for f in files]
    assert (reprocessed.group_key, reprocessed.group_by) == ("1.2.3.16", "(0020,000D)")
    ids = [j.job_id for g in (resubmitted, reprocessed) for j in g.jobs]
    assert len(set(ids)) == 3 and "job-original" not in ids
    assert all(r.key == key for r in records)

    # Retention removed a file: one line naming it, exit 2, nothing written.
    gone = Path(files[1].uri)
    await asyncio.to_thread(gone.unlink)
    code, out, err = await cli("jobs", "resubmit", "job-original", *common)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "1 of 3 instance files are gone from disk" in err and str(gone) in err
    code, out, err = await cli("studies", "reprocess", "1.2.3.16", "--ae", AE, *common)
    assert code == 2 and err.count("\n") == 1 and str(gone) in err
    code, out, err = await cli("studies", "reprocess", "9.9.9", "--ae", AE, *common)
    assert code == 2 and "no instance of study 9.9.9 for AE title AET1" in err
    code, out, err = await cli("jobs", "resubmit", "job-original", "--pipeline", "brain", *common)
    assert code == 2 and "has no pipeline-brain in the config (it has lung, heart)" in err
    after = await read_topic(kafka_bootstrap, f"{prefix}.jobs")
    assert len(manual_groups(after)) == 2
