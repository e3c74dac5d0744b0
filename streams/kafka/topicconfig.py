"""Topic-level settings: what the adapter asks for at creation, and the check of topics
that already exist (docs/operations.md, "Topics and retention").

A topic created by hand, by an older version or by broker auto-creation has the broker's
defaults: ``retention.ms`` of 7 days deletes the jobs ledger (``jobs list``, exactly-once
state, the audit trail) and instances not yet grouped. :func:`wanted_configs` is what the
adapter creates its topics with; :func:`check_topic_configs` compares an existing topic's
settings with it (pure) and says, per setting, whether the difference breaks the adapter
(*fatal*: it refuses to start) or only weakens a promise (a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from streams.config import KafkaConfig

RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"
CLEANUP_POLICY = "cleanup.policy"
MIN_INSYNC = "min.insync.replicas"
TIMESTAMP_TYPE = "message.timestamp.type"
UNLIMITED = -1
_HOUR_MS = 3_600_000


def hours_to_ms(hours: float | None) -> int:
    """``retention.ms`` for a number of hours (``None``: unlimited, -1)."""
    return UNLIMITED if hours is None else max(1, round(hours * _HOUR_MS))


def describe_ms(ms: int) -> str:
    """``-1`` -> ``unlimited``; else hours or days, for messages."""
    if ms < 0:
        return "unlimited"
    hours = ms / _HOUR_MS
    if hours >= 48:
        return f"{hours / 24:g} days"
    return f"{hours:g} h" if hours >= 1 else f"{ms / 1000:g} s"


def min_insync_replicas(kafka: KafkaConfig) -> int | None:
    """``kafka.min_insync_replicas``, else ``replication_factor - 1`` capped at 2 (3
    replicas: 2 must acknowledge); ``None`` for unreplicated topics."""
    if kafka.replication_factor <= 1:
        return None
    if kafka.min_insync_replicas is not None:
        return kafka.min_insync_replicas
    return max(1, min(2, kafka.replication_factor - 1))


def wanted_configs(
    kafka: KafkaConfig,
    instances: str,
    jobs: str,
    sources: str,
    exports: str,
    *,
    groups: str | None = None,
) -> dict[str, dict[str, str]]:
    """Topic-level settings the adapter creates its topics with.

    * instances: stamped by the broker (``LogAppendTime``: one clock per partition,
      docs/processing.md "Time"), deleted after ``kafka.retention.instances_hours``;
    * jobs and exports: the ledgers, every record kept (compaction would keep only the
      last record of each key) for ``kafka.retention.{jobs,exports}_hours`` (unlimited);
    * sources: the last heartbeat of each source (compacted);
    * groups: the last list of open groups of each AE title and partition (compacted
      often: it is said again every few seconds).

    Every topic gets ``min.insync.replicas`` when replicated (acks=all then means that
    many copies).
    """
    retention = kafka.retention
    log_topics = {
        instances: retention.instances_hours,
        jobs: retention.jobs_hours,
        exports: retention.exports_hours,
    }
    out: dict[str, dict[str, str]] = {
        name: {
            CLEANUP_POLICY: "delete",
            RETENTION_MS: str(hours_to_ms(hours)),
            RETENTION_BYTES: str(UNLIMITED),
        }
        for name, hours in log_topics.items()
    }
    out[instances][TIMESTAMP_TYPE] = "LogAppendTime"
    out[sources] = {
        CLEANUP_POLICY: "compact",
        "segment.ms": "3600000",
        TIMESTAMP_TYPE: "LogAppendTime",
    }
    if groups is not None:
        out[groups] = {
            CLEANUP_POLICY: "compact",
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
        }
    isr = min_insync_replicas(kafka)
    if isr is not None:
        for settings in out.values():
            settings[MIN_INSYNC] = str(isr)
    return out


@dataclass(frozen=True, slots=True)
class TopicFinding:
    """One setting of an existing topic that differs from what the adapter needs."""

    topic: str
    key: str
    actual: str
    wanted: str
    why: str
    fatal: bool
    setting: str = ""  # the adapter's config key that would accept the topic as it is

    def message(self) -> str:
        """One line: the topic, the setting, both values, why it matters and the fix."""
        fix = (
            f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
            f"--entity-name {self.topic} --add-config {self.key}={self.wanted}"
        )
        if self.setting:
            fix += f" (or set {self.setting} to match the topic)"
        return (
            f"topic {self.topic}: {self.key} is {_show(self.key, self.actual)}, the adapter "
            f"wants {_show(self.key, self.wanted)}: {self.why}; fix: {fix}"
        )


def _show(key: str, value: str) -> str:
    if key == RETENTION_MS:
        try:
            return f"{value} ({describe_ms(int(value))})"
        except ValueError:
            return value
    return value


def check_topic_configs(
    actual: Mapping[str, Mapping[str, str]],
    wanted: Mapping[str, Mapping[str, str]],
    needs_ms: Mapping[str, int],
    settings: Mapping[str, str] | None = None,
) -> list[TopicFinding]:
    """Compare existing topics' settings (``actual``, as the broker describes them) with
    ``wanted``. ``needs_ms``: the shortest ``retention.ms`` a topic can have at all (the
    longest open window, the ledger horizon); below it the finding is fatal.
    ``settings``: per topic, the adapter's config key for its retention."""
    findings: list[TopicFinding] = []
    for topic, want in wanted.items():
        have = actual.get(topic)
        if have is None:
            continue
        setting = (settings or {}).get(topic, "")
        for key, value in want.items():
            found = have.get(key)
            if found is None or (found == value and key != RETENTION_MS):
                continue
            finding = _compare(topic, key, found, value, need_ms=needs_ms.get(topic, 0))
            if finding is not None and finding.key == RETENTION_MS and not finding.fatal:
                finding = replace(finding, setting=setting)
            if finding is not None:
                findings.append(finding)
    return findings


def _compare(topic: str, key: str, found: str, value: str, *, need_ms: int) -> TopicFinding | None:
    if key == RETENTION_MS:
        have, want = _int(found), _int(value)
        if 0 <= have < need_ms:
            why = (
                f"records younger than the {describe_ms(need_ms)} the adapter relies on "
                "(open windows, the ledger horizon) would be deleted"
            )
            if 0 <= want < need_ms:  # the configured retention itself is too short
                value = str(need_ms)
            return TopicFinding(topic, key, found, value, why, True)
        if have < 0 or (0 <= want <= have):
            return None  # unlimited, or at least as long as wanted
        why = "records are deleted sooner than configured (history, audit trail, replays)"
        return TopicFinding(topic, key, found, value, why, False)
    if key == RETENTION_BYTES:
        if _int(found) < 0:
            return None
        why = "size-based deletion can drop records the adapter still needs, at any age"
        return TopicFinding(topic, key, found, value, why, False)
    if key == CLEANUP_POLICY:
        if value == "delete" and "compact" in found:
            why = "compaction keeps only the last record of each key; the log needs them all"
            return TopicFinding(topic, key, found, value, why, True)
        if value == "compact" and "compact" not in found:
            why = "the topic grows with every heartbeat instead of keeping the last per source"
            return TopicFinding(topic, key, found, value, why, False)
        return None
    if key == MIN_INSYNC:
        if _int(found) >= _int(value):
            return None
        why = "an acknowledged record may exist on fewer replicas than configured"
        return TopicFinding(topic, key, found, value, why, False)
    if key == TIMESTAMP_TYPE:
        why = "windows use the broker's append time; producers' clocks may disagree"
        return TopicFinding(topic, key, found, value, why, False)
    return None


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return UNLIMITED
