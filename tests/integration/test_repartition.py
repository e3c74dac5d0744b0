"""groupBy a tag that spans patients, on 12 partitions and 2 processor replicas (issue 14).

Modality (0008,0060) groups instances of many patients, whose records land on many
partitions of the instances topic. The process repartitions them through
``<prefix>.rekeyed.<AE>`` keyed by the modality, so every modality's group is formed by
one owner: one group per modality, every instance in exactly one, also when a second
replica joins mid-stream (both consumer groups rebalance while instances flow).
Real role processes on a real broker, DCMTK storescu as the sender.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.events import GroupClosed
from tests.helpers.cluster import Cluster, Role
from tests.helpers.dicom import make_ct, storescu, write_instances
from tests.helpers.processor import poll_readyz
from tests.helpers.waiting import free_port, wait_clock_past_inputs, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "CLARA-MOD"
TIMEOUT_S = 5  # the seed's minimum
PARTITIONS = 12
MODALITIES = ("CT", "MR", "US")
PATIENTS = 8  # per modality: 24 patients over 12 partitions


def write_config(path: Path, *, prefix: str, storage: Path) -> Path:
    storage.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"adapter_id: repartition-test\nstorage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {PARTITIONS}\n"
        "processor:\n  commit_interval_ms: 200\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        f"  ae_titles:\n    - ae_title: {AE}\n      processorSettings:\n"
        f"        groupBy: '0008,0060'\n        timeout: {TIMEOUT_S}\n"
        "        pipeline-triage: P-TRIAGE\n"
    )
    return path


async def send_round(scp: Role, folder: Path, round_no: int) -> list[str]:
    """One association: an instance of every patient of every modality."""
    datasets = []
    for modality in MODALITIES:
        for n in range(PATIENTS):
            ds = make_ct(patient_id=f"PAT-{modality}-{n}", accession=f"A{round_no}")
            ds.Modality = modality
            datasets.append(ds)
    files = write_instances(folder / f"round-{round_no}", datasets)
    result = await asyncio.to_thread(storescu, scp.dicom_port, files, aec=AE)
    assert result.returncode == 0, result.stderr
    return [ds.SOPInstanceUID for ds in datasets]


def groups(records: list) -> list[GroupClosed]:  # type: ignore[type-arg]
    return [r.envelope.data for r in records if isinstance(r.envelope.data, GroupClosed)]


async def test_modality_groups_span_partitions_and_a_replica_joining_mid_stream(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("mod")
    config = write_config(tmp_path / "a.yaml", prefix=prefix, storage=tmp_path / "storage")
    cluster = Cluster(kafka_bootstrap, config, tmp_path)
    try:
        scp = await cluster.start("scp", "scp-1", dicom_port=free_port())
        first = await cluster.start("process", "processor-1")
        for role in (scp, first):
            await poll_readyz(role.url, lambda status, _body: status == 200)
        sent: list[str] = []
        for round_no in range(4):  # 1 s apart: well inside the timeout
            sent += await send_round(scp, tmp_path / "send", round_no)
            if round_no == 1:  # a second replica joins while the study flows
                await cluster.start("process", "processor-2")
            await asyncio.sleep(1.0)  # sender pacing

        def all_grouped(records: list) -> bool:  # type: ignore[type-arg]
            return sum(len(g.instances) for g in groups(records) if g.jobs) >= len(sent)

        await wait_for_ledger(
            kafka_bootstrap, f"{prefix}.jobs", all_grouped, timeout_s=90, alive=cluster.alive
        )
        # Not a fixed wait: once the clock passed every input and the processes committed
        # past that, a late second group would be in the ledger.
        rekeyed = f"{prefix}.rekeyed.{AE}"
        await wait_clock_past_inputs(
            kafka_bootstrap, prefix, AE, TIMEOUT_S * 1000, topic=rekeyed, alive=cluster.alive
        )
        records = await wait_for_ledger(kafka_bootstrap, f"{prefix}.jobs", lambda _r: True)
        cluster.alive()
    finally:
        codes = await cluster.terminate()
    assert set(codes.values()) == {0}, f"a role did not stop cleanly: {codes}"
    closed = groups(records)
    with_jobs = [g for g in closed if g.jobs]
    assert sorted(g.group_key for g in with_jobs) == sorted(MODALITIES), "split or missing"
    per_instance = collections.Counter(i.sop_instance_uid for g in with_jobs for i in g.instances)
    assert set(per_instance) == set(sent) and set(per_instance.values()) == {1}
    for group in with_jobs:
        assert len(group.instances) == 4 * PATIENTS and len(group.jobs) == 1
        assert group.input_topic == f"{prefix}.rekeyed.{AE}"
    assert [g for g in closed if not g.jobs] == [], "an instance was removed"
