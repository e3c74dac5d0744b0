"""Operators see and steer open groups (issue 15), on the real broker with DCMTK senders.

One SCP and two processor replicas as separate processes; ``dicom-adapter groups`` is
the real CLI. Every wait is a poll with a deadline; the only sleeps pace the sender.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import generate_uid

from streams.events import GroupClosed, GroupCloseRequested, schema_path, to_dict
from streams.kafka import Record, read_topic
from tests.helpers.dicom import make_ct
from tests.helpers.ops import Adapter, closed_groups, running_adapter
from tests.helpers.processor import PIPELINES
from tests.helpers.waiting import wait_for_ledger, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]


async def _open_studies(adapter: Adapter, tmp: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Send one study per patient (``sizes``: patient -> instances); wait until
    ``groups list`` shows each; returns study UID -> group id."""
    studies = {}
    for patient, count in sizes.items():
        study = generate_uid()
        studies[study] = count
        datasets = [make_ct(patient_id=patient, study_uid=study) for _ in range(count)]
        await adapter.send(tmp / study, datasets)
    found: list[dict[str, object]] = []

    async def all_listed() -> bool:
        found[:] = await adapter.groups()
        listed = {g["group_key"]: g["instances"] for g in found}
        return listed == studies

    await wait_until(all_listed, "every study listed as an open group", timeout_s=30)
    return {str(g["group_key"]): str(g["group_id"]) for g in found}


def _forced(key: str) -> Callable[[list[Record]], bool]:
    return lambda records: any(
        g.reason == "forced" and g.group_key == key for g in closed_groups(records)
    )


async def test_groups_list_shows_each_open_group_once_and_close_forces_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("ops")
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="timeout: 600"
    ) as adapter:
        studies = await _open_studies(adapter, tmp_path, {"PAT-A": 3, "PAT-B": 2, "PAT-C": 1})
        listed = await adapter.groups()
        assert len(listed) == 3 and len({g["group_id"] for g in listed}) == 3  # each once
        owners = {str(g["owner"]).split("/")[0] for g in listed}
        assert owners <= {"proc-0", "proc-1"}
        for g in listed:
            assert g["ae_title"] == "CLARA-OPS" and g["group_by"] == "(0020,000D)"
            assert g["due_reason"] == "timeout" and g["stale"] is False
            assert int(g["deadline"]) == int(g["last_received_at"]) + 600_000  # type: ignore[call-overload]
        said = await read_topic(kafka_bootstrap, f"{prefix}.groups")
        schema = json.loads(schema_path("groups.open").read_text())
        assert said and {r.envelope.type for r in said} == {"groups.open"}
        for r in said:  # real records match their JSON Schema
            jsonschema.validate(to_dict(r.envelope), schema)
        only_a = await adapter.groups("--ae", "CLARA-OPS")
        assert len(only_a) == 3 and await adapter.groups("--ae", "OTHER") == []
        # The human table carries no group key (it may be a Patient ID).
        table = await asyncio.to_thread(adapter.cli, "list")
        assert table.returncode == 0 and all(s not in table.stdout for s in studies)

        study, gid = next((s, g) for s, g in studies.items())
        done = await asyncio.to_thread(adapter.cli, "close", gid)
        assert done.returncode == 0 and "close requested" in done.stdout, done.stderr
        records = await wait_for_ledger(
            kafka_bootstrap, adapter.jobs_topic, _forced(study), timeout_s=10
        )
        (record,) = [
            r
            for r in records
            if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.group_key == study
        ]
        forced = record.envelope.data
        assert isinstance(forced, GroupClosed) and forced.reason == "forced"
        (request,) = [
            r.envelope
            for r in await read_topic(kafka_bootstrap, f"{prefix}.instances")
            if isinstance(r.envelope.data, GroupCloseRequested)
        ]
        assert request.data.group_id == gid  # type: ignore[union-attr]
        # Closed within 2 s of the request being on the bus (both stamped on this host).
        assert 0 <= record.timestamp - request.time < 2_000
        assert sorted(j.pipeline_name for j in forced.jobs) == sorted(PIPELINES)

        async def gone() -> bool:
            return gid not in {g["group_id"] for g in await adapter.groups()}

        await wait_until(gone, "the closed group leaves the list", timeout_s=10)
        again = await asyncio.to_thread(adapter.cli, "close", gid)
        assert (
            again.returncode == 0
            and "is not open" in again.stdout
            and "nothing to do" in again.stdout
        )
        closes = Counter[str]()
        for proc in adapter.processes:
            closes += await _closes(proc.url)
        assert closes == Counter({"forced": 1})  # the metric of forced closes
        others = [g for s, g in studies.items() if s != study]
        assert {g["group_id"] for g in await adapter.groups()} == set(others)
        adapter.cluster.alive()
    records = await wait_for_ledger(kafka_bootstrap, adapter.jobs_topic, lambda rs: True)
    assert [g.group_key for g in closed_groups(records)] == [study]  # once, nothing else


@pytest.mark.parametrize("frozen_first", [False, True], ids=["killed-after", "frozen-before"])
async def test_a_close_survives_its_owner_being_killed_right_after_the_request(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, frozen_first: bool
) -> None:
    """SIGKILL right after the request is on the bus: the owner may or may not have
    acted on it. ``frozen-before`` stops the owner (SIGSTOP) before the request, so it
    surely did not: the survivor must meet the request when it replays the partition."""
    prefix = unique_name("ops-kill")
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="timeout: 600"
    ) as adapter:
        studies = await _open_studies(adapter, tmp_path, {"PAT-K": 4})
        ((study, gid),) = studies.items()
        (row,) = await adapter.groups()
        owner = next(p for p in adapter.processes if str(row["owner"]).startswith(p.name + "/"))
        survivor = next(p for p in adapter.processes if p is not owner)
        if frozen_first:
            owner.proc.send_signal(signal.SIGSTOP)
        done = await asyncio.to_thread(adapter.cli, "close", gid)
        assert done.returncode == 0, done.stderr
        await adapter.cluster.kill(owner)  # right after the request is on the bus
        assert owner.proc.returncode == -signal.SIGKILL
        records = await wait_for_ledger(
            kafka_bootstrap, adapter.jobs_topic, _forced(study), timeout_s=60,
            alive=survivor.alive,
        )  # fmt: skip

        async def listed_by_survivor() -> bool:
            return gid not in {g["group_id"] for g in await adapter.groups()}

        # The survivor owns every partition and says so; the group is not re-opened.
        await wait_until(listed_by_survivor, "the group is not open any more", timeout_s=30)
        records = await wait_for_ledger(kafka_bootstrap, adapter.jobs_topic, lambda rs: True)
    groups = closed_groups(records)
    assert [(g.group_key, g.reason) for g in groups] == [(study, "forced")]  # exactly one
    jobs = Counter(j.pipeline_name for g in groups for j in g.jobs)
    assert jobs == Counter(list(PIPELINES))
    assert len(groups[0].instances) == 4


async def test_max_age_closes_a_group_that_never_goes_quiet(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """``maxAge: 20``, an instance every 3 s for 40 s, timeout 5: the first group closes
    with reason max_age 20-21 s after its first instance; later instances form a new
    group; every instance is in exactly one job per pipeline."""
    prefix = unique_name("ops-age")
    study = generate_uid()
    sent: list[str] = []
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="timeout: 5\nmaxAge: 20", processes=1
    ) as adapter:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(14):  # t = 0, 3, ..., 39 s
            await asyncio.sleep(max(0.0, start + 3 * n - loop.time()))  # pacing the sender
            ds = make_ct(patient_id="PAT-XA", study_uid=study)
            await adapter.send(tmp_path / f"i{n}", [ds])
            sent.append(str(ds.SOPInstanceUID))

        def all_grouped(records: list[Record]) -> bool:
            return sum(len(g.instances) for g in closed_groups(records)) >= len(sent)

        records = await wait_for_ledger(
            kafka_bootstrap, adapter.jobs_topic, all_grouped, timeout_s=30,
            alive=adapter.cluster.alive,
        )  # fmt: skip
        forced_or_aged = await _closes(adapter.processes[0].url)
    closed = [
        (r, r.envelope.data)
        for r in records
        if isinstance(r.envelope.data, GroupClosed) and r.envelope.data.jobs
    ]
    (first_record, first), *rest = closed
    assert first.reason == "max_age"
    assert 20_000 <= first_record.timestamp - first.first_received_at <= 21_000
    assert rest and all(g.first_received_at > first.last_received_at for _, g in rest)
    members = [i.sop_instance_uid for _, g in closed for i in g.instances]
    assert sorted(members) == sorted(sent)  # nothing lost, nothing twice
    assert all(sorted(j.pipeline_name for j in g.jobs) == sorted(PIPELINES) for _, g in closed)
    assert forced_or_aged["max_age"] == sum(g.reason == "max_age" for _, g in closed)


async def _closes(url: str) -> Counter[str]:
    """``dicom_adapter_groups_closed_total`` of one process, by reason."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"{url}/metrics")).text
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dicom_adapter_groups_closed_total":
                out[sample.labels["reason"]] += int(sample.value)
    return out


async def test_close_reaches_a_group_of_a_repartitioned_ae_title(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Grouped by Modality, a group spans patients and lives on the rekeyed topic: the
    request goes to that topic's partition and the group closes, forced, once."""
    prefix = unique_name("ops-rekey")
    async with running_adapter(
        kafka_bootstrap, tmp_path, prefix, settings="groupBy: (0008,0060)\ntimeout: 600",
        processes=1,
    ) as adapter:  # fmt: skip
        for patient in ("PAT-R1", "PAT-R2"):
            await adapter.send(tmp_path / patient, [make_ct(patient_id=patient)])
        rows: list[dict[str, object]] = []

        async def listed() -> bool:
            rows[:] = await adapter.groups()
            return len(rows) == 1 and rows[0]["instances"] == 2

        await wait_until(listed, "one CT group of two patients", timeout_s=60)
        (row,) = rows
        assert str(row["topic"]).startswith(f"{prefix}.rekeyed.") and row["group_key"] == "CT"
        done = await asyncio.to_thread(adapter.cli, "close", str(row["group_id"]))
        assert done.returncode == 0 and "close requested" in done.stdout, done.stderr
        records = await wait_for_ledger(
            kafka_bootstrap, adapter.jobs_topic, _forced("CT"), timeout_s=20
        )
    (group,) = closed_groups(records)
    assert len(group.instances) == 2 and len(group.jobs) == len(PIPELINES)
