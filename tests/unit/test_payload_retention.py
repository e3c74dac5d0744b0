"""Payload retention (issue 13): ``submitter.payload_retention_hours`` means what the docs
say -- 0 removes a submitted group's payloads with its files (so the bytes are really
freed), a number of hours expires them that long after submission, ``never`` keeps them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from processors.cli import main
from processors.reclaim import ReclaimService
from processors.reclaim.service import MAX_SWEEP_INTERVAL_S, sweep_interval
from streams.config import AdapterConfig, load_config
from streams.errors import ConfigError
from streams.events import Envelope, GroupInstance, InstancesRemoved, JobSubmitted
from streams.storage import stage_payload
from tests.helpers.jobs import env, group_closed, write_instances

KEY = "AET1/PAT1"
SIZE = 100


class Recorder:
    """A publisher that keeps what it is given (the reclaimer's one write per action)."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish(
        self, topic: str, key: str, env: Envelope, *, partition: int | None = None
    ) -> tuple[int, int]:
        self.published.append(env)
        return 0, len(self.published) - 1

    async def publish_many(
        self, topic: str, items: object, *, partitions: object = None
    ) -> list[tuple[int, int]]:
        raise AssertionError("the reclaimer writes one event at a time")


def _config(tmp_path: Path, value: str | None) -> float | None:
    text = "submitter:\n  kind: kafka\n"
    if value is not None:
        text += f"  payload_retention_hours: {value}\n"
    path = tmp_path / "adapter.yaml"
    path.write_text(text)
    return load_config(path, env={}).submitter.payload_retention_hours


@pytest.mark.parametrize(
    ("value", "hours"),
    [(None, 24.0), ("0", 0.0), ("0.5", 0.5), ("720", 720.0), ("never", None), ("NEVER", None)],
)
def test_payload_retention_hours_reads_hours_or_never(
    tmp_path: Path, value: str | None, hours: float | None
) -> None:
    assert _config(tmp_path, value) == hours


@pytest.mark.parametrize("value", ["-1", "forever", "true", "'1 day'", ".inf", "null"])
def test_a_bad_payload_retention_names_the_key_and_the_fix(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, value)
    (line,) = caught.value.problems
    assert line.startswith("submitter.payload_retention_hours: "), line
    assert "or never" in line, line


def test_a_config_with_never_dumps_to_json_and_reads_back() -> None:
    """Roles in tests (and tools) hand a config over as JSON: ``never`` must survive
    the trip (``null`` reads as "no value", a config error)."""
    config = AdapterConfig.model_validate(
        {"submitter": {"kind": "kafka", "payload_retention_hours": "never"}}
    )
    assert config.kafka.retention.jobs_hours is None  # the default: never
    again = AdapterConfig.model_validate_json(config.model_dump_json())
    assert again.submitter.payload_retention_hours is None
    assert again.kafka.retention == config.kafka.retention


def test_the_sweep_runs_often_enough_for_the_retention() -> None:
    assert sweep_interval(None) == MAX_SWEEP_INTERVAL_S
    assert sweep_interval(0.0) == MAX_SWEEP_INTERVAL_S
    assert sweep_interval(4.0) == 1.0
    assert sweep_interval(0.01) == 0.1
    assert sweep_interval(24 * 3600.0) == MAX_SWEEP_INTERVAL_S
    assert sweep_interval(24 * 3600.0, 5.0) == 5.0


def _submitted_group(
    storage: Path, retention_s: float | None, clock: list[float]
) -> tuple[ReclaimService, Recorder, list[GroupInstance], Path]:
    """A service that folded one group with one submitted job whose payload is staged."""
    instances = write_instances(storage, per_series=3, size=SIZE)
    staged = stage_payload(storage, "job-a", "PAT1", instances)
    recorder = Recorder()
    service = ReclaimService(
        storage=storage,
        publisher=recorder,
        topic="t.jobs",
        source="test",
        payload_retention_s=retention_s,
        clock=lambda: clock[0],
    )
    service.assigned(frozenset({0}))
    gc = group_closed(instances, jobs=[("job-a", "normal")])
    submitted = JobSubmitted(
        "job-a", "n", "AET1", "lung", "pid", "normal", str(staged.path), staged.instances, 1
    )
    service.record(0, 0, KEY, env(gc, 1_000, "g1"))
    service.record(0, 1, KEY, env(submitted, 2_000))
    return service, recorder, instances, staged.path


def _dcm_files(storage: Path) -> list[Path]:
    return sorted(storage.rglob("*.dcm"))


def _removed(recorder: Recorder) -> list[InstancesRemoved]:
    return [e.data for e in recorder.published if isinstance(e.data, InstancesRemoved)]


async def _reclaim_ready(service: ReclaimService) -> None:
    service.caught_up(0)
    (group,) = service.ledger.ready()
    assert await service.reclaim(group, asyncio.Event()) is not None


async def test_retention_zero_removes_the_payload_with_the_files_and_frees_the_bytes(
    tmp_path: Path,
) -> None:
    service, recorder, instances, payload = _submitted_group(tmp_path, 0.0, [3.0])
    await _reclaim_ready(service)
    assert _dcm_files(tmp_path) == []
    assert not payload.exists()
    (removed,) = _removed(recorder)
    assert removed.reason == "submitted" and removed.job_ids == ("job-a",)
    assert removed.bytes_freed == SIZE * len(instances)  # the last link of every file went


async def test_never_keeps_the_payload_and_frees_nothing(tmp_path: Path) -> None:
    service, recorder, instances, payload = _submitted_group(tmp_path, None, [3.0])
    await _reclaim_ready(service)
    assert len(_dcm_files(payload)) == len(instances)
    assert [p for p in _dcm_files(tmp_path) if payload not in p.parents] == []
    (removed,) = _removed(recorder)
    assert removed.bytes_freed == 0  # the payload still holds a link of each file
    assert await service.sweep(asyncio.Event()) == 0


async def test_a_finite_retention_keeps_the_payload_until_it_expires(tmp_path: Path) -> None:
    clock = [3.0]
    service, recorder, instances, payload = _submitted_group(tmp_path, 10.0, clock)
    await _reclaim_ready(service)
    assert len(_dcm_files(payload)) == len(instances)
    clock[0] = 2.0 + 9.9  # submitted at 2.0 s: not yet
    assert await service.sweep(asyncio.Event()) == 0
    assert payload.exists()
    clock[0] = 2.0 + 10.0
    assert await service.sweep(asyncio.Event()) == 1
    assert _dcm_files(tmp_path) == []
    submitted, expired = _removed(recorder)
    assert (submitted.reason, submitted.bytes_freed) == ("submitted", 0)
    assert (expired.reason, expired.job_ids) == ("payload_expired", ("job-a",))
    assert expired.bytes_freed == SIZE * len(instances)


def test_config_check_says_how_long_things_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text(
        "submitter:\n  payload_retention_hours: never\n  orphan_grace_hours: 0.5\n"
        "kafka:\n  retention: {instances_hours: 48}\n"
    )
    assert main(["config", "check", "--no-env", str(path)]) == 0
    out = capsys.readouterr().out
    assert "payloads kept never, orphan files removed after 0.5 h" in out
    assert "retention instances 48 h, jobs never" in out
