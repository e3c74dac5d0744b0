"""Acceptance of the cache processor (issue 7) with real parts end to end.

Real Kafka, the real CLI roles as separate processes (``scp``, ``process`` serving the
cache API, ``submit`` with the reclaimer) and DCMTK ``storescu``: two studies sent to
an AE title using ``processor: cache`` are both listed by the API; ``POST /jobs`` for
one gives a ``job.submitted`` (Kafka hand-off) with exactly that study's instances, the
reclaimer then deletes its files, and the other study stays listed -- also after the
``process`` role restarts, and after a restart that finds the database file gone (it is
rebuilt from the topics).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from helpers.dicom import echoscu, make_ct, storescu, write_instances
from helpers.processor import readyz
from helpers.waiting import free_port, wait_for_ledger
from pydicom.uid import generate_uid

from processors.cache import database_path
from streams.events import InstancesRemoved, JobSubmitted

pytestmark = [pytest.mark.kafka, pytest.mark.dicom, pytest.mark.slow]

AE = "CACHE-AE"
PIPELINE = "8abf244aff7647989d4f6b3987a85759"
REPO = Path(__file__).resolve().parents[2]


def _config(path: Path, *, prefix: str, storage: Path, scp_port: int) -> Path:
    path.write_text(
        f"adapter_id: cache-acceptance\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "processor:\n  commit_interval_ms: 200\n"
        "submitter:\n  kind: kafka\n"
        f"scp:\n  host: 127.0.0.1\n  port: {scp_port}\n"
        "  watermark_percent: 100\n  reserve_space_gb: 0\n"
        "  ae_titles:\n"
        f"    - ae_title: {AE}\n"
        "      processor: cache\n"
        "      processorSettings:\n"
        "        priority: higher\n"
        f"        pipeline-lung: {PIPELINE}\n"
    )
    return path


@asynccontextmanager
async def role(
    name: str, config: Path, bootstrap: str, log: Path, http_port: int = 0
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``dicom-adapter <name>`` as a subprocess (stderr to ``log``); SIGTERM on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    env["DICOM_ADAPTER_HTTP__PORT"] = str(http_port)
    env["DICOM_ADAPTER_HTTP__AUTH__TOKENS"] = TOKEN
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processors.cli", name, "--config", str(config),
            "--kafka", bootstrap,
            cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, f"{name} exited {proc.returncode}: {_tail(log)}"


#: The API needs a token (processors/http/auth.py); the roles get it from the environment.
TOKEN = "cache-flow-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _remove_database(storage: Path) -> None:
    db = database_path(storage, AE)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _check_logs(logs: Path) -> None:
    """No traceback and no PHI (patient IDs) in any role's log."""
    for log in logs.iterdir():
        text = log.read_text()
        assert "Traceback" not in text, f"{log.name}: {text[-3000:]}"
        assert "PAT-A" not in text and "PAT-B" not in text, f"PHI in {log.name}"


async def until(check: Callable[[], object], what: str, timeout_s: float = 60.0) -> object:
    """Poll ``check`` (sync or async) until it returns something truthy (readiness)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not reached within {timeout_s} s (last: {last!r})")


async def listed_studies(client: httpx.AsyncClient) -> list[str]:
    response = await client.get(f"/cache/{AE}/studies")
    assert response.status_code == 200, response.text
    return [s["study_instance_uid"] for s in response.json()["items"]]


async def ready(url: str) -> bool:
    answer = await readyz(url)
    return answer is not None and answer[0] == 200


def _sops(files: Sequence[Path]) -> set[str]:
    return {f.stem for f in files}


async def test_two_studies_one_job_the_other_stays_across_restarts(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("cache")
    storage = tmp_path / "storage"
    storage.mkdir()
    scp_port, http_port = free_port(), free_port()
    config = _config(tmp_path / "adapter.yaml", prefix=prefix, storage=storage, scp_port=scp_port)
    url = f"http://127.0.0.1:{http_port}"
    study_a, study_b = generate_uid(), generate_uid()
    files_a = write_instances(
        tmp_path / "in-a",
        [make_ct(patient_id="PAT-A", study_uid=study_a, instance_number=n) for n in range(3)],
    )
    files_b = write_instances(
        tmp_path / "in-b",
        [make_ct(patient_id="PAT-B", study_uid=study_b, instance_number=n) for n in range(2)],
    )
    logs = tmp_path / "logs"
    logs.mkdir()

    async with (
        role("scp", config, kafka_bootstrap, logs / "scp.log"),
        role("submit", config, kafka_bootstrap, logs / "submit.log"),
        httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as client,
    ):
        async with role("process", config, kafka_bootstrap, logs / "process.log", http_port):
            await until(lambda: echoscu(scp_port, aec=AE).returncode == 0, "SCP answers C-ECHO")
            await until(lambda: ready(url), "process /readyz 200")
            for files in (files_a, files_b):
                sent = await asyncio.to_thread(storescu, scp_port, files, aec=AE)
                assert sent.returncode == 0, sent.stderr

            async def both_listed() -> bool:
                return sorted(await listed_studies(client)) == sorted([study_a, study_b])

            await until(both_listed, "both studies listed")
            study = (await client.get(f"/cache/{AE}/studies/{study_a}")).json()
            assert study["study"]["instances"] == 3 and study["study"]["patient_id"] == "PAT-A"

            response = await client.post(
                f"/cache/{AE}/jobs", json={"studies": [study_a], "pipeline": "lung"}
            )
            assert response.status_code == 201, response.text
            job = response.json()
            assert job["instances"] == 3 and job["priority"] == "higher"
            assert await listed_studies(client) == [study_b]

            def submitted(records: list) -> list[JobSubmitted]:  # type: ignore[type-arg]
                return [
                    r.envelope.data for r in records
                    if isinstance(r.envelope.data, JobSubmitted)
                    and r.envelope.data.job_id == job["job_id"]
                ]  # fmt: skip

            def removed(records: list) -> list[InstancesRemoved]:  # type: ignore[type-arg]
                return [
                    r.envelope.data for r in records
                    if isinstance(r.envelope.data, InstancesRemoved)
                    and job["job_id"] in r.envelope.data.job_ids
                ]  # fmt: skip

            records = await wait_for_ledger(
                kafka_bootstrap, f"{prefix}.jobs", lambda rs: bool(submitted(rs) and removed(rs))
            )
            [done] = submitted(records)
            assert {i.sop_instance_uid for i in done.instances} == _sops(files_a)
            assert {i.study_instance_uid for i in done.instances} == {study_a}
            assert (done.pipeline_id, done.pipeline_name) == (PIPELINE, "lung")
            assert set(removed(records)[0].sop_instance_uids) == _sops(files_a)
            # The reclaimer deleted study A's received files; study B's are still there.
            kept = {p.stem for p in storage.rglob("*.dcm") if "payloads" not in p.parts}
            assert kept == _sops(files_b)

        # Restart the process role: study B is still listed, study A is not.
        async with role("process", config, kafka_bootstrap, logs / "process2.log", http_port):
            await until(lambda: ready(url), "restarted process /readyz 200")
            assert await listed_studies(client) == [study_b]

        # Restart without the database file: rebuilt from the topics, same answer.
        _remove_database(storage)
        async with role("process", config, kafka_bootstrap, logs / "process3.log", http_port):
            await until(lambda: ready(url), "rebuilt process /readyz 200")
            assert await listed_studies(client) == [study_b]
            detail = (await client.get(f"/cache/{AE}/studies/{study_b}")).json()
            assert detail["study"]["instances"] == 2
        assert "cache database rebuilt: 2 cached, 3 already consumed" in _tail(
            logs / "process3.log"
        )
    _check_logs(logs)
