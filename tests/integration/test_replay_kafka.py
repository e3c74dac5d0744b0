"""``dicom-adapter replay`` on a real broker (issue 16).

A day of scripted traffic, compressed to ~16 s (one "hour" = 0.7 s): ten studies of
several patients, each arriving in one to three bursts of instances ("series") whose
gaps are longer than 5 s and shorter than 30 s. The real ``process`` role (timeout 5)
forms the ledger: one group per burst. The real CLI then replays the instances log:

* with the production config (timeout 5) it gives exactly the ledger's groups (same
  members, same deterministic job ids) and ``--diff`` finds nothing changed;
* with timeout 30 every study is one group, and ``--diff`` names exactly the moves:
  every instance of a study's later bursts, from its burst's group to the study's first.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.jobnames import group_id
from streams.events import envelope
from streams.kafka import EventPublisher
from tests.helpers.processor import (
    AE,
    REPO,
    instance,
    job_groups,
    key_of,
    poll_readyz,
    start_process,
    stop_process,
    write_config,
)
from tests.helpers.waiting import free_port, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOUR_S = 0.7


def day_plan(rng: random.Random) -> list[tuple[float, str, str, str]]:
    """``(at_s, patient, study, sop)``, sorted by time: bursts 9-13 "hours" apart."""
    out: list[tuple[float, str, str, str]] = []
    for n in range(10):
        study = f"1.2.826.0.1.3680043.10.16.{n}"
        at = rng.uniform(0, 8) * HOUR_S
        for burst in range(rng.randint(1, 3)):
            for i in range(rng.randint(1, 3)):
                out.append((at + 0.1 * i, f"PAT-{n % 4}", study, f"{study}.{burst}.{i}"))
            at += rng.uniform(9, 13) * HOUR_S  # 6.3-9.1 s: > 5 s, < 30 s
    return sorted(out)


async def replay_cli(config: Path, bootstrap: str, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "processors.cli",
        "replay",
        "--config",
        str(config),
        "--kafka",
        bootstrap,
        "--json",
        "--diff",
        *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert b"PAT-" not in err and b"PAT-" not in out, "PHI printed"
    doc: dict[str, Any] = orjson.loads(out)
    return doc


async def test_replay_reproduces_the_ledger_and_diffs_a_longer_timeout(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("replay")
    port = free_port()
    five = write_config(
        tmp_path / "five.yaml", prefix=prefix, storage=tmp_path / "storage", timeout_s=5
    )
    thirty = write_config(
        tmp_path / "thirty.yaml", prefix=prefix, storage=tmp_path / "storage", timeout_s=30
    )
    plan = day_plan(random.Random(16))
    proc = await start_process(five, kafka_bootstrap, env={"DICOM_ADAPTER_HTTP__PORT": str(port)})
    try:
        await poll_readyz(f"http://127.0.0.1:{port}", lambda s, b: s == 200)
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with EventPublisher(kafka_bootstrap) as publisher:
            for at_s, patient, study, sop in plan:
                await asyncio.sleep(max(0.0, start + at_s - loop.time()))  # traffic pacing
                now = int(time.time() * 1000)
                data = instance(patient=patient, study=study, sop=sop, received_at=now)
                env = envelope(data, source="scp", time_ms=now)
                await publisher.publish(f"{prefix}.instances", key_of(data), env)

        def alive() -> None:
            assert proc.returncode is None, "the process role died"

        def all_grouped(records: list[Any]) -> bool:
            grouped = {i.sop_instance_uid for g in job_groups(records) for i in g.instances}
            return grouped >= {sop for *_, sop in plan}

        records = await wait_for_ledger(kafka_bootstrap, f"{prefix}.jobs", all_grouped, alive=alive)
        same = await replay_cli(five, kafka_bootstrap)
        longer = await replay_cli(thirty, kafka_bootstrap)
    finally:
        await stop_process(proc)

    ledger = job_groups(records)
    bursts = len({(study, sop.split(".")[-2]) for _, _, study, sop in plan})
    assert len(ledger) == bursts  # timeout 5: one group per burst

    # Production settings: exactly the ledger's groups, nothing moved.
    def gid(record: Any) -> str:
        return group_id(AE, record.inputs[0].partition, record.inputs[0].offset)

    closed = {g["group_id"]: g for g in same["groups"] if g["state"] == "closed"}
    assert set(closed) == {gid(r) for r in ledger}
    for record in ledger:
        mine = closed[gid(record)]
        assert mine["instances"] == [i.sop_instance_uid for i in record.instances]
        assert mine["inputs"] == [[i.partition, i.offset] for i in record.inputs]
        assert [j["job_id"] for j in mine["jobs"]] == [j.job_id for j in record.jobs]
        assert [j["name"] for j in mine["jobs"]] == [j.name for j in record.jobs]
    assert [g for g in same["groups"] if g["state"] == "open"] == []
    assert same["diff"]["moves"] == [] and same["diff"]["changed"] == []
    assert (same["diff"]["added"], same["diff"]["removed"]) == ([], [])

    # Timeout 30: one group per study; the diff names exactly the moves.
    by_study: dict[str, list[Any]] = {}
    for record in sorted(ledger, key=lambda r: r.first_received_at):
        by_study.setdefault(record.group_key, []).append(record)
    merged = sorted(sorted(g["instances"]) for g in longer["groups"])
    assert merged == sorted(
        sorted(i.sop_instance_uid for r in rs for i in r.instances) for rs in by_study.values()
    )
    expected_moves = sorted(
        (i.sop_instance_uid, gid(later), gid(rs[0]))
        for rs in by_study.values()
        for later in rs[1:]
        for i in later.instances
    )
    moves = sorted((m["sop_instance_uid"], m["from"], m["to"]) for m in longer["diff"]["moves"])
    assert moves == expected_moves and moves, "no study arrived in two bursts"
    split = {gid(rs[0]) for rs in by_study.values() if len(rs) > 1}
    assert set(longer["diff"]["changed"]) == split
    assert set(longer["diff"]["removed"]) == {gid(r) for rs in by_study.values() for r in rs[1:]}
    assert longer["diff"]["added"] == []
    assert longer["summary"]["closed"] + longer["summary"]["open"] == len(by_study)
