"""Many adapters, one clock (issue 14): real role processes on a real broker, DCMTK senders.

* Two SCPs whose clocks are 20 s apart (the second under ``faketime``), one study sent as
  four associations alternating between them: one group (both directions).
* An SCP frozen (SIGSTOP) for 10 s between two associations of one study, the second
  one knocking while it is frozen: one group.
* The broker paused 20 s while an SCP keeps receiving into its outbox: every study one
  group.

Waits are polls with deadlines; the sleeps are the planned length of a fault (a freeze,
a pause) or the pacing of the sender, never the assertion.
"""

from __future__ import annotations

import asyncio
import glob
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.broker import KafkaBroker
from streams.events import GroupClosed
from tests.helpers.cluster import Cluster, Role
from tests.helpers.dicom import make_ct, storescu, write_instances
from tests.helpers.processor import poll_readyz
from tests.helpers.waiting import free_port, wait_clock_past_inputs, wait_for_ledger

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "CLARA-CT"
TIMEOUT_S = 5


def generate_uid() -> str:
    """A short study UID (its instances append ``.N`` within the 64 characters of UI)."""
    return f"1.2.826.0.1.3680043.10.999.{random.randrange(10**9, 10**10)}"


def write_config(
    path: Path, *, prefix: str, storage: Path, ae_titles: tuple[str, ...] = (AE,)
) -> Path:
    storage.mkdir(parents=True, exist_ok=True)
    entries = "".join(
        f"    - ae_title: {ae}\n      processorSettings:\n        timeout: {TIMEOUT_S}\n"
        f"        pipeline-lung: P-{ae}\n"
        for ae in ae_titles
    )
    path.write_text(
        f"adapter_id: clock-test\nstorage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
        "processor:\n  commit_interval_ms: 200\n  source_idle_timeout_s: 45\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "scp:\n  host: 127.0.0.1\n  watermark_percent: 100\n  reserve_space_gb: 0\n"
        f"  ae_titles:\n{entries}"
    )
    return path


async def ready(*roles: Role) -> None:
    for role in roles:
        await poll_readyz(role.url, lambda status, _body: status == 200)


async def send(scp: Role, folder: Path, study: str, n: int, start: int, *, ae: str = AE) -> None:
    """One association of ``n`` instances of ``study`` (DCMTK storescu)."""
    datasets = [
        make_ct(patient_id="PAT-CLOCK", study_uid=study, sop_uid=f"{study}.{start + i}")
        for i in range(n)
    ]
    files = write_instances(folder / f"{start}", datasets)
    result = await asyncio.to_thread(storescu, scp.dicom_port, files, aec=ae)
    assert result.returncode == 0, result.stderr


def groups_of(study: str) -> Callable[[list], list[GroupClosed]]:  # type: ignore[type-arg]
    def pick(records: list) -> list[GroupClosed]:  # type: ignore[type-arg]
        return [
            r.envelope.data
            for r in records
            if isinstance(r.envelope.data, GroupClosed)
            and r.envelope.data.jobs
            and r.envelope.data.group_key == study
        ]

    return pick


async def settled_groups(
    bootstrap: str, prefix: str, study: str, count: int, cluster: Cluster
) -> list[GroupClosed]:
    """The study's groups once all ``count`` instances are in one, or the wait ran out
    (then the test sees the split), read again once a late second group of the study
    would have been written."""
    pick = groups_of(study)

    def done(records: list) -> bool:  # type: ignore[type-arg]
        return sum(len(g.instances) for g in pick(records)) >= count

    found = pick(
        await wait_for_ledger(bootstrap, f"{prefix}.jobs", done, timeout_s=90, alive=cluster.alive)
    )
    # Not a fixed wait: once the clock passed every input and the AE title's processes
    # committed past that, a second group of the study would be in the ledger.
    ae = found[0].ae_title
    await wait_clock_past_inputs(bootstrap, prefix, ae, TIMEOUT_S * 1000, alive=cluster.alive)
    return pick(await wait_for_ledger(bootstrap, f"{prefix}.jobs", lambda _r: True))


def faketime_env(offset: str) -> dict[str, str]:
    """libfaketime preloaded into the role itself (not the ``faketime`` wrapper, which
    forks: the role would outlive a SIGTERM sent to the wrapper). Monotonic time shifts
    with it: libfaketime's sleeps fail (EINVAL) when only the wall clock is faked."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert libs, "libfaketime not found: apt-get install faketime"
    return {"LD_PRELOAD": libs[0], "FAKETIME": offset}


@pytest.mark.parametrize("skew", ["+20s", "-20s"])
async def test_two_scps_with_clocks_20_s_apart_form_one_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, skew: str
) -> None:
    prefix = unique_name("skew")
    config = write_config(tmp_path / "a.yaml", prefix=prefix, storage=tmp_path / "storage")
    cluster = Cluster(kafka_bootstrap, config, tmp_path)
    try:
        scp1 = await cluster.start("scp", "scp-1", dicom_port=free_port())
        scp2 = await cluster.start(
            "scp", "scp-2", dicom_port=free_port(), env=faketime_env(skew)
        )  # fmt: skip
        proc = await cluster.start("process", "processor")
        await ready(scp1, scp2, proc)
        study = generate_uid()
        for n, scp in enumerate([scp1, scp2, scp1, scp2]):  # gaps well under the timeout
            await send(scp, tmp_path / "send", study, 2, 2 * n)
            await asyncio.sleep(1.0)  # sender pacing
        groups = await settled_groups(kafka_bootstrap, prefix, study, 8, cluster)
        assert [len(g.instances) for g in groups] == [8], "the study was split"
        cluster.alive()
    finally:
        await cluster.terminate()


async def test_an_scp_frozen_between_two_associations_of_a_study_forms_one_group(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("frozen")
    config = write_config(tmp_path / "a.yaml", prefix=prefix, storage=tmp_path / "storage")
    cluster = Cluster(kafka_bootstrap, config, tmp_path)
    try:
        scp = await cluster.start("scp", "scp-1", dicom_port=free_port())
        proc = await cluster.start("process", "processor")
        await ready(scp, proc)
        study = generate_uid()
        await send(scp, tmp_path / "send", study, 2, 0)
        scp.proc.send_signal(signal.SIGSTOP)
        try:
            # The second association knocks 1 s later, while the SCP is frozen.
            second = asyncio.create_task(send(scp, tmp_path / "send", study, 2, 2))
            await asyncio.sleep(10)  # the freeze (the fault's planned length)
        finally:
            scp.proc.send_signal(signal.SIGCONT)
        await second
        groups = await settled_groups(kafka_bootstrap, prefix, study, 4, cluster)
        assert [len(g.instances) for g in groups] == [4], "the study was split"
    finally:
        await cluster.terminate()


async def test_a_broker_paused_while_an_scp_fills_its_outbox_splits_no_study(
    kafka_jars: Path, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A broker of this test's own: pausing the session's would stall other tests.
    broker = KafkaBroker(tmp_path / "kafka", libs_dir=kafka_jars)
    await broker.start()
    bootstrap = broker.bootstrap_servers
    prefix = unique_name("outage")
    config = write_config(tmp_path / "a.yaml", prefix=prefix, storage=tmp_path / "storage")
    cluster = Cluster(bootstrap, config, tmp_path)
    try:
        scp = await cluster.start("scp", "scp-1", dicom_port=free_port())
        proc = await cluster.start("process", "processor")
        await ready(scp, proc)
        before, during = generate_uid(), generate_uid()
        await send(scp, tmp_path / "send", before, 2, 0)  # published at once
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            await send(scp, tmp_path / "send", before, 2, 2)  # into the outbox
            await send(scp, tmp_path / "send", during, 3, 0)
            await asyncio.sleep(20)  # the outage (the fault's planned length)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        for study, count in ((before, 4), (during, 3)):
            groups = await settled_groups(bootstrap, prefix, study, count, cluster)
            assert [len(g.instances) for g in groups] == [count], "a study was split"
    finally:
        await cluster.terminate()
        await broker.stop()


async def test_two_adapters_with_disjoint_ae_titles_lose_nothing_of_each_other(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("two")
    one = write_config(
        tmp_path / "one.yaml", prefix=prefix, storage=tmp_path / "s1", ae_titles=("AE-ONE",)
    )
    two = write_config(
        tmp_path / "two.yaml", prefix=prefix, storage=tmp_path / "s2", ae_titles=("AE-TWO",)
    )
    cluster = Cluster(kafka_bootstrap, one, tmp_path)
    try:
        scp1 = await cluster.start("scp", "scp-one", dicom_port=free_port())
        scp2 = await cluster.start("scp", "scp-two", dicom_port=free_port(), config=two)
        p1 = await cluster.start("process", "proc-one")
        p2 = await cluster.start("process", "proc-two", config=two)
        await ready(scp1, scp2, p1, p2)
        studies = {"AE-ONE": generate_uid(), "AE-TWO": generate_uid()}
        await send(scp1, tmp_path / "a", studies["AE-ONE"], 3, 0, ae="AE-ONE")
        await send(scp2, tmp_path / "b", studies["AE-TWO"], 3, 0, ae="AE-TWO")
        for ae, study in studies.items():
            groups = await settled_groups(kafka_bootstrap, prefix, study, 3, cluster)
            assert [(g.ae_title, len(g.instances)) for g in groups] == [(ae, 3)]
        records = await wait_for_ledger(kafka_bootstrap, f"{prefix}.jobs", lambda _r: True)
        removals = [
            r.envelope.data
            for r in records
            if isinstance(r.envelope.data, GroupClosed) and not r.envelope.data.jobs
        ]
        assert removals == [], "one adapter reclaimed the other's instances"
    finally:
        await cluster.terminate()
