"""Topic settings on a real broker (issue 13): what the adapter creates, read back with the
admin client, and what it says about an existing topic that keeps records too briefly."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.config import KafkaConfig
from streams.errors import ConfigError
from streams.kafka import ensure_adapter_topics, ensure_topics

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
KEYS = ("retention.ms", "retention.bytes", "cleanup.policy", "message.timestamp.type")
WEEK_MS = 7 * 24 * 3_600_000


async def read_back(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """The topics' settings as the broker describes them (the admin client, not ours)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    return {
        res[3]: {e[0]: e[1] for e in res[4] if e[0] in KEYS}
        for response in responses
        for res in response.resources
    }


async def test_the_adapter_creates_its_topics_with_explicit_retention_and_cleanup(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("tc")
    config = KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        partitions=2,
        retention={"instances_hours": 48},  # type: ignore[arg-type]
    )
    await ensure_adapter_topics(kafka_bootstrap, config, needs_ms={f"{prefix}.instances": 1})
    names = [f"{prefix}.{t}" for t in ("instances", "jobs", "sources", "exports")]
    described = await read_back(kafka_bootstrap, names)
    assert described[f"{prefix}.instances"] == {
        "retention.ms": str(48 * 3_600_000),
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "message.timestamp.type": "LogAppendTime",
    }
    for ledger in ("jobs", "exports"):  # the ledgers: kept without limit, every record
        settings = described[f"{prefix}.{ledger}"]
        assert (settings["retention.ms"], settings["cleanup.policy"]) == ("-1", "delete")
    assert described[f"{prefix}.sources"]["cleanup.policy"] == "compact"


async def test_an_existing_ledger_with_the_brokers_week_is_a_warning_naming_the_fix(
    kafka_bootstrap: str, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_name("tw")
    jobs = f"{prefix}.jobs"
    await ensure_topics(kafka_bootstrap, {jobs: 2}, configs={jobs: {"retention.ms": str(WEEK_MS)}})
    config = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.topics"):
        counts = await ensure_adapter_topics(kafka_bootstrap, config, needs_ms={jobs: 60_000})
    assert counts[jobs] == 2  # it starts
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"topic {jobs}: retention.ms is {WEEK_MS} (7 days), the adapter ")
    assert f"--entity-name {jobs} --add-config retention.ms=-1" in warning
    assert "kafka.retention.jobs_hours" in warning
    # nothing was changed behind the operator's back
    assert (await read_back(kafka_bootstrap, [jobs]))[jobs]["retention.ms"] == str(WEEK_MS)


async def test_an_existing_topic_shorter_than_the_windows_is_an_error(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("te")
    instances = f"{prefix}.instances"
    await ensure_topics(
        kafka_bootstrap, {instances: 2}, configs={instances: {"retention.ms": "1000"}}
    )
    config = KafkaConfig(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2)
    with pytest.raises(ConfigError) as caught:
        await ensure_adapter_topics(kafka_bootstrap, config, needs_ms={instances: 65_000})
    (line,) = caught.value.problems
    assert line.startswith(f"topic {instances}: retention.ms is 1000 (1 s)")
    assert "65 s the adapter relies on" in line


def test_a_role_refuses_to_start_on_a_too_short_topic_with_one_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique_name("tr")
    instances = f"{prefix}.instances"
    asyncio.run(
        ensure_topics(
            kafka_bootstrap, {instances: 2}, configs={instances: {"retention.ms": "1000"}}
        )
    )
    config = tmp_path / "adapter.yaml"
    config.write_text(
        f"storage: {tmp_path / 'storage'}\nkafka:\n  topic_prefix: {prefix}\n  partitions: 2\n"
        "http:\n  port: 0\n"
        "scp:\n  ae_titles:\n    - ae_title: CT\n      processorSettings:\n"
        "        timeout: 30\n        pipeline-x: '1'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_ADAPTER")}
    result = subprocess.run(
        [sys.executable, "-m", "processors.cli", "submit", "--config", str(config),
         "--kafka", kafka_bootstrap],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"submit: topic {instances}: retention.ms is 1000 (1 s)" in errors[0]
    assert "90 s the adapter relies on" in errors[0]  # timeout 30 s + source idle 60 s
