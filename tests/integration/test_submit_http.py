"""Submitting to a real HTTP platform: retries, dead letters, ``jobs retry``, priorities.

Real parts only: the Kafka broker of the session, an HTTP server started by the test
(tests/helpers/platform.py) and the real CLI for ``jobs``. ``group.closed`` events are
written directly, standing in for the job processors.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from processors.submit import HttpPlatform, RetryPolicy
from streams.events import GroupInstance, JobFailed, JobSubmitted, Priority
from tests.helpers.jobs import group_closed, write_instances
from tests.helpers.platform import PlatformServer
from tests.helpers.submitter import of_type, publish, running_submitter
from tests.helpers.waiting import committed_offsets, wait_for_ledger, wait_until

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
KEY = "AET1/PAT1"


def has(kind: str, count: int = 1, job_id: str | None = None) -> Callable[[Any], bool]:
    def check(records: Any) -> bool:
        found = [
            r
            for r in records
            if r.envelope.type == kind
            and (job_id is None or getattr(r.envelope.data, "job_id", None) == job_id)
        ]
        return len(found) >= count

    return check


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m processors.cli ...`` without blocking the loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processors.cli", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def dcm_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.dcm"))


def exists(path: Path) -> bool:
    return path.exists()


def existing(instances: Sequence[GroupInstance]) -> int:
    return sum(os.path.exists(i.uri) for i in instances)


def write_config(path: Path, prefix: str, storage: Path, url: str) -> Path:
    path.write_text(
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: 3\n"
        f"submitter:\n  kind: http\n  url: {url}\n  max_attempts: 3\n"
        "  backoff_initial_s: 0.05\n  backoff_max_s: 0.2\n"
    )
    return path


async def test_503s_are_retried_with_the_same_key_and_submitted_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    instances = write_instances(storage, series=("1.2.3.1.1", "1.2.3.1.2"), per_series=2)
    with PlatformServer(fail_first=2) as server:
        platform = HttpPlatform(server.url, timeout_s=5)
        async with running_submitter(kafka_bootstrap, topic, storage, platform, group=prefix):
            gc = group_closed(instances, jobs=[("job-503", "higher")])
            await publish(kafka_bootstrap, topic, [(KEY, gc)])
            records = await wait_for_ledger(kafka_bootstrap, topic, has("instances.removed"))

    assert server.keys() == ["job-503"] * 3  # every attempt carried the same key
    assert [r.status for r in server.requests] == [503, 503, 201]
    assert server.created == {"job-503": "plat-1"}
    failures = [e.data for e in of_type(records, "job.failed")]
    assert all(isinstance(f, JobFailed) for f in failures)
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True)]  # type: ignore[union-attr]
    assert all("HTTP 503" in f.error and f.retry_at > 0 for f in failures)  # type: ignore[union-attr]
    (submitted,) = [e.data for e in of_type(records, "job.submitted")]
    assert isinstance(submitted, JobSubmitted)
    assert (submitted.attempt, submitted.platform_job_id) == (3, "plat-1")
    assert (submitted.pipeline_id, submitted.priority) == ("pipeline-0", "higher")
    payload = Path(submitted.payload_uri)
    assert payload == storage / "payloads" / "job-503"
    staged = dcm_files(payload)
    assert len(staged) == 4 and {Path(i.uri) for i in submitted.instances} == set(staged)
    body = server.requests[-1].body
    assert body["job_id"] == "job-503" and body["payload_uri"] == str(payload)
    assert body["pipeline_id"] == "pipeline-0" and len(body["instances"]) == 4
    # the group's files are gone, the payload (hard links) stays
    assert not exists(storage / "AET1")
    assert len(dcm_files(payload)) == 4


async def test_a_400_dead_letters_keeps_files_and_jobs_retry_submits(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    instances = write_instances(storage, per_series=3)
    fixed = threading.Event()

    def reject(body: dict[str, Any]) -> tuple[int, str] | None:
        return None if fixed.is_set() else (400, f"unknown pipeline {body['pipeline_id']}")

    with PlatformServer(reject=reject) as server:
        config = write_config(tmp_path / "adapter.yaml", prefix, storage, server.url)
        kafka = ["--kafka", kafka_bootstrap, "--config", str(config)]
        platform = HttpPlatform(server.url, timeout_s=5)
        async with running_submitter(kafka_bootstrap, topic, storage, platform, group=prefix):
            await publish(
                kafka_bootstrap,
                topic,
                [(KEY, group_closed(instances, jobs=[("job-400", "normal")]))],
            )
            records = await wait_for_ledger(kafka_bootstrap, topic, has("job.failed"))
            (failed,) = [e.data for e in of_type(records, "job.failed")]
            assert isinstance(failed, JobFailed)
            assert (failed.attempt, failed.will_retry) == (1, False)
            assert "HTTP 400" in failed.error and "unknown pipeline" in failed.error
            # dead-lettered: every file kept for the operator, nothing reclaimed
            assert existing(instances) == len(instances)
            assert len(dcm_files(storage / "payloads" / "job-400")) == 3
            assert not of_type(records, "instances.removed")

            code, out, err = await cli("jobs", "show", "job-400", "--json", *kafka)
            assert code == 0, err
            shown = orjson.loads(out)
            assert (shown["state"], shown["attempts"], shown["priority"]) == ("dead", 1, "normal")

            fixed.set()
            code, out, err = await cli("jobs", "retry", "job-400", "--reason", "fixed", *kafka)
            assert code == 0, err
            assert "retry requested for job job-400" in out
            records = await wait_for_ledger(kafka_bootstrap, topic, has("instances.removed"))

            code, out, err = await cli("jobs", "retry", "job-400", *kafka)
            assert code == 2 and out == ""
            assert err.strip().count("\n") == 0 and "not dead-lettered" in err

            code, out, err = await cli("jobs", "list", *kafka)
            assert code == 0, err
            assert "job-400" in out and "submitted" in out and "PAT1" not in out

    assert server.keys() == ["job-400", "job-400"]
    assert list(server.created) == ["job-400"]
    (submitted,) = [e.data for e in of_type(records, "job.submitted")]
    assert isinstance(submitted, JobSubmitted) and submitted.attempt == 2
    (request,) = [e.data for e in of_type(records, "job.retry_requested")]
    assert request.job_id == "job-400" and request.reason == "fixed"  # type: ignore[union-attr]
    assert existing(instances) == 0


def _many_groups(storage: Path, specs: list[tuple[str, Priority]]) -> list[tuple[str, Any]]:
    items = []
    for index, (job_id, priority) in enumerate(specs):
        files = write_instances(storage, study=f"1.2.9.{index}", per_series=1)
        gc = group_closed(
            files, patient=f"PAT{index}", jobs=[(job_id, priority)], group_key=f"1.2.9.{index}"
        )
        items.append((f"AET1/PAT{index}", gc))
    return items


async def test_twenty_jobs_behind_a_slow_platform_go_in_priority_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    cycle: list[Priority] = ["lower", "normal", "immediate", "higher", "normal"]
    specs = [(f"job-{i:02d}", cycle[(i * 7) % 5]) for i in range(20)]
    gate = threading.Event()
    with PlatformServer(gate=gate, delay_s=0.05) as server:
        platform = HttpPlatform(server.url, timeout_s=30)
        async with running_submitter(
            kafka_bootstrap, topic, storage, platform, group=prefix, aging_s=3600
        ) as harness:
            await publish(kafka_bootstrap, topic, _many_groups(storage, [("blocker", "lower")]))
            await wait_until(lambda: server.arrived == 1)
            base_ms = int(time.time() * 1000)
            for index, item in enumerate(_many_groups(storage / "x", specs)):
                # one group at a time, 10 ms apart: "oldest first" is well defined
                await publish(kafka_bootstrap, topic, [item], time_ms=base_ms + index * 10)
            await wait_until(lambda: len(harness.submitter.queue) == 20)
            gate.set()
            await wait_for_ledger(kafka_bootstrap, topic, has("job.submitted", 21))

    rank = {"immediate": 0, "higher": 1, "normal": 2, "lower": 3}
    expected = [job for job, _ in sorted(specs, key=lambda s: (rank[s[1]], s[0]))]
    assert server.created_order() == ["blocker", *expected]


async def test_a_lower_job_is_not_starved_by_immediate_ones(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    specs: list[tuple[str, Priority]] = [("low", "lower")]
    specs += [(f"imm-{i:02d}", "immediate") for i in range(30)]
    gate = threading.Event()
    with PlatformServer(gate=gate, delay_s=0.1) as server:
        platform = HttpPlatform(server.url, timeout_s=30)
        async with running_submitter(
            kafka_bootstrap, topic, storage, platform, group=prefix, aging_s=0.5
        ) as harness:
            await publish(kafka_bootstrap, topic, _many_groups(storage, [("blocker", "lower")]))
            await wait_until(lambda: server.arrived == 1)
            await publish(kafka_bootstrap, topic, _many_groups(storage / "x", specs))
            await wait_until(lambda: len(harness.submitter.queue) == len(specs))
            gate.set()
            await wait_for_ledger(kafka_bootstrap, topic, has("job.submitted", 32))

    order = server.created_order()[1:]
    assert sorted(order) == sorted(job for job, _ in specs)
    # with strict priority it would be last; aging lets it in while immediates still wait
    assert order.index("low") < len(order) - 5, order


async def test_offsets_are_committed_only_after_the_outcome_is_written(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("p")
    topic = f"{prefix}.jobs"
    storage = tmp_path / "storage"
    instances = write_instances(storage)
    policy = RetryPolicy(max_attempts=1000, initial_s=0.2, max_s=0.3)
    with PlatformServer(fail_first=10_000) as server:
        platform = HttpPlatform(server.url, timeout_s=5)
        async with running_submitter(
            kafka_bootstrap, topic, storage, platform, group=prefix, policy=policy
        ):
            await publish(
                kafka_bootstrap, topic, [(KEY, group_closed(instances, jobs=[("j", "normal")]))]
            )
            records = await wait_for_ledger(kafka_bootstrap, topic, has("job.failed", 5))
            (closed,) = [r for r in records if r.envelope.type == "group.closed"]
            group = f"{prefix}.submit"
            # the commit loop runs every second: wait until it has committed something

            async def has_commit() -> bool:
                return (await committed_offsets(kafka_bootstrap, group)).get(
                    TopicPartition(topic, closed.partition)
                ) is not None

            await wait_until(has_commit, timeout_s=20)
            more = await wait_for_ledger(kafka_bootstrap, topic, has("job.failed", 10))
            assert len(more) > len(records)
            # retries are being written, but the group.closed is not done: not committed past
            assert (await committed_offsets(kafka_bootstrap, group)).get(
                TopicPartition(topic, closed.partition)
            ) == closed.offset
            server.fail_first = 0
            done = await wait_for_ledger(kafka_bootstrap, topic, has("job.submitted"))
            submitted_at = max(r.offset for r in done if r.envelope.type == "job.submitted")

            async def moved() -> bool:
                offset = (await committed_offsets(kafka_bootstrap, group)).get(
                    TopicPartition(topic, closed.partition)
                )
                return offset is not None and offset > submitted_at

            await wait_until(moved, timeout_s=20)
