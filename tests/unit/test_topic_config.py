"""Topic settings at creation and the check of existing topics (issue 13), pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processors.roles.retention import longest_window_s, topic_needs_ms
from streams.config import AdapterConfig, KafkaConfig, load_config
from streams.errors import ConfigError
from streams.kafka import rekeyed_topic_configs
from streams.kafka.topicconfig import (
    check_topic_configs,
    describe_ms,
    hours_to_ms,
    min_insync_replicas,
    wanted_configs,
)

NAMES = ("p.instances", "p.jobs", "p.sources", "p.exports")
DAY_MS = 24 * 3_600_000


def _wanted(**kafka: Any) -> dict[str, dict[str, str]]:
    return wanted_configs(KafkaConfig.model_validate(kafka), *NAMES)


def test_topics_are_created_with_explicit_retention_and_cleanup() -> None:
    wanted = _wanted()
    assert wanted["p.instances"] == {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * DAY_MS),
        "retention.bytes": "-1",
        "message.timestamp.type": "LogAppendTime",
    }
    for ledger in ("p.jobs", "p.exports"):
        assert wanted[ledger] == {
            "cleanup.policy": "delete",
            "retention.ms": "-1",
            "retention.bytes": "-1",
        }
    assert wanted["p.sources"]["cleanup.policy"] == "compact"
    assert all("min.insync.replicas" not in w for w in wanted.values())  # one replica


def test_retention_and_min_insync_replicas_are_configurable() -> None:
    wanted = _wanted(
        replication_factor=3,
        retention={"instances_hours": "never", "jobs_hours": 24 * 365, "exports_hours": 1},
    )
    assert wanted["p.instances"]["retention.ms"] == "-1"
    assert wanted["p.jobs"]["retention.ms"] == str(365 * DAY_MS)
    assert wanted["p.exports"]["retention.ms"] == "3600000"
    assert {w["min.insync.replicas"] for w in wanted.values()} == {"2"}
    assert (
        _wanted(replication_factor=5, min_insync_replicas=3)["p.jobs"]["min.insync.replicas"] == "3"
    )


@pytest.mark.parametrize(("replicas", "isr"), [(1, None), (2, 1), (3, 2), (5, 2)])
def test_default_min_insync_replicas(replicas: int, isr: int | None) -> None:
    assert min_insync_replicas(KafkaConfig(replication_factor=replicas)) == isr


def test_min_insync_replicas_above_the_replication_factor_is_a_config_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("kafka:\n  replication_factor: 2\n  min_insync_replicas: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (line,) = caught.value.problems
    assert line.startswith("kafka.min_insync_replicas: is 3, more than replication_factor (2)")
    assert "use at most 2" in line


def test_bad_topic_retention_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("kafka:\n  retention:\n    jobs_hours: forever\n    instance_hours: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    lines = caught.value.problems
    assert any(p.startswith("kafka.retention.jobs_hours: 'forever'") for p in lines), lines
    assert any(p.startswith("kafka.retention.instance_hours: unknown key") for p in lines), lines


def test_hours_and_durations() -> None:
    assert hours_to_ms(None) == -1
    assert hours_to_ms(0.5) == 1_800_000
    assert hours_to_ms(0) == 1  # Kafka reads 0 as "delete at once"; the shortest it takes
    assert (describe_ms(-1), describe_ms(7 * DAY_MS), describe_ms(3_600_000)) == (
        "unlimited",
        "7 days",
        "1 h",
    )
    assert describe_ms(65_000) == "65 s"


def test_a_matching_topic_has_no_findings() -> None:
    wanted = _wanted()
    assert check_topic_configs(wanted, wanted, {}) == []
    longer = {**wanted, "p.instances": {**wanted["p.instances"], "retention.ms": "-1"}}
    assert check_topic_configs(longer, wanted, {}) == []  # unlimited is more than needed


def test_the_brokers_seven_day_default_on_the_ledger_is_a_warning() -> None:
    wanted = _wanted()
    actual = {"p.jobs": {**wanted["p.jobs"], "retention.ms": str(7 * DAY_MS)}}
    (finding,) = check_topic_configs(actual, wanted, {"p.jobs": DAY_MS}, {"p.jobs": "kafka.x"})
    assert (finding.topic, finding.key, finding.fatal) == ("p.jobs", "retention.ms", False)
    message = finding.message()
    assert "topic p.jobs: retention.ms is 604800000 (7 days)" in message
    assert "wants -1 (unlimited)" in message
    assert "--entity-name p.jobs --add-config retention.ms=-1" in message
    assert "(or set kafka.x to match the topic)" in message


def test_a_retention_shorter_than_the_open_windows_is_fatal() -> None:
    wanted = _wanted()
    actual = {"p.instances": {**wanted["p.instances"], "retention.ms": "1000"}}
    (finding,) = check_topic_configs(actual, wanted, {"p.instances": 65_000})
    assert finding.fatal and finding.key == "retention.ms"
    assert "65 s the adapter relies on" in finding.message()


def test_a_compacted_ledger_is_fatal_and_other_drifts_are_warnings() -> None:
    wanted = _wanted(replication_factor=3)
    actual = {
        "p.jobs": {**wanted["p.jobs"], "cleanup.policy": "compact,delete"},
        "p.instances": {
            **wanted["p.instances"],
            "retention.bytes": "1000000",
            "min.insync.replicas": "1",
            "message.timestamp.type": "CreateTime",
        },
        "p.sources": {**wanted["p.sources"], "cleanup.policy": "delete"},
    }
    found = {(f.topic, f.key): f.fatal for f in check_topic_configs(actual, wanted, {})}
    assert found == {
        ("p.jobs", "cleanup.policy"): True,
        ("p.instances", "retention.bytes"): False,
        ("p.instances", "min.insync.replicas"): False,
        ("p.instances", "message.timestamp.type"): False,
        ("p.sources", "cleanup.policy"): False,
    }


def _adapter(settings: dict[str, Any], **top: Any) -> AdapterConfig:
    return AdapterConfig.model_validate(
        {
            "kafka": {"topic_prefix": "p"},
            "scp": {
                "ae_titles": [
                    {"ae_title": "A", "processorSettings": {"timeout": 5, "pipeline-x": "1"}},
                    {"ae_title": "B", "processorSettings": settings},
                ]
            },
            **top,
        }
    )


def test_the_needs_follow_the_longest_window_and_the_payload_retention() -> None:
    config = _adapter({"timeout": 120, "pipeline-x": "1"})
    assert longest_window_s(config) == 120 + 60  # + the source idle timeout
    assert topic_needs_ms(config) == {"p.instances": 180_000, "p.jobs": DAY_MS}
    config = _adapter(
        {"timeout": 60, "maxAge": 3600, "pipeline-x": "1"},
        submitter={"payload_retention_hours": 0},
    )
    assert topic_needs_ms(config) == {"p.instances": 3_660_000, "p.jobs": 3_660_000}


def test_a_configured_retention_shorter_than_the_windows_is_fatal_on_a_new_topic() -> None:
    wanted = _wanted(retention={"instances_hours": 0.001})  # 3.6 s
    (finding,) = check_topic_configs(wanted, wanted, {"p.instances": 65_000}, {"p.instances": "k"})
    assert finding.fatal
    assert finding.message().endswith("--add-config retention.ms=65000")


def test_rekeyed_topics_keep_the_instances_retention_and_their_copies_timestamps() -> None:
    kafka = KafkaConfig(topic_prefix="p", replication_factor=3)
    settings = rekeyed_topic_configs(kafka)
    assert settings["message.timestamp.type"] == "CreateTime"
    assert settings["retention.ms"] == str(30 * DAY_MS)
    assert (settings["cleanup.policy"], settings["min.insync.replicas"]) == ("delete", "2")
    assert rekeyed_topic_configs() == {"message.timestamp.type": "CreateTime"}
