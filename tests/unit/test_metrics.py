"""The Prometheus metrics of issue 6: names, labels and what each helper counts.

The registry is process-wide and counters only grow, so every test reads a value before
and after (:func:`streams.metrics.sample_value`) and asserts the difference.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import generate_latest

from streams import metrics as m

EXPECTED_NAMES = (
    "dicom_adapter_instances_received_total",
    "dicom_adapter_instances_stored_total",
    "dicom_adapter_instances_published_total",
    "dicom_adapter_instances_refused_total",
    "dicom_adapter_outbox_pending_bytes",
    "dicom_adapter_open_groups",
    "dicom_adapter_group_close_lag_seconds",
    "dicom_adapter_instances_ignored_total",
    "dicom_adapter_jobs_total",
    "dicom_adapter_submit_attempts_total",
    "dicom_adapter_reclaimed_bytes_total",
    "dicom_adapter_consumer_lag",
)


def test_status_is_four_upper_case_hex_digits() -> None:
    assert m.status_hex(0xA700) == "0xA700"
    assert m.status_hex(0xC211) == "0xC211"
    assert m.status_hex(0x0122) == "0x0122"


def test_scp_counters_are_per_called_ae() -> None:
    ae = "METRICS-SCP"
    names = ("received", "stored", "published")
    before = {
        n: m.sample_value(f"dicom_adapter_instances_{n}_total", {"called_ae": ae}) for n in names
    }
    m.instance_received(ae)
    m.instance_received(ae)
    m.instance_stored(ae)
    m.instances_published(ae, 2)
    after = {
        n: m.sample_value(f"dicom_adapter_instances_{n}_total", {"called_ae": ae}) for n in names
    }
    assert {n: after[n] - before[n] for n in names} == {"received": 2, "stored": 1, "published": 2}
    assert m.sample_value("dicom_adapter_instances_received_total", {"called_ae": "OTHER-AE"}) == 0


def test_refused_is_labelled_with_the_status() -> None:
    labels = {"called_ae": "METRICS-REF", "status": "0xA700"}
    before = m.sample_value("dicom_adapter_instances_refused_total", labels)
    m.instance_refused("METRICS-REF", 0xA700)
    assert m.sample_value("dicom_adapter_instances_refused_total", labels) == before + 1
    assert (
        m.sample_value(
            "dicom_adapter_instances_refused_total",
            {"called_ae": "METRICS-REF", "status": "0xC000"},
        )
        == 0
    )


def test_gauges_hold_the_last_value() -> None:
    m.set_outbox_depth(7)
    m.set_outbox_depth(3)
    assert m.sample_value("dicom_adapter_outbox_pending_bytes") == 3
    m.set_open_groups("METRICS-G", 12)
    m.set_open_groups("METRICS-G", 4)
    assert m.sample_value("dicom_adapter_open_groups", {"ae_title": "METRICS-G"}) == 4


def test_close_lag_is_seconds_after_the_deadline_and_never_negative() -> None:
    labels = {"ae_title": "METRICS-LAG"}
    count = m.sample_value("dicom_adapter_group_close_lag_seconds_count", labels)
    total = m.sample_value("dicom_adapter_group_close_lag_seconds_sum", labels)
    m.group_closed("METRICS-LAG", "timeout", closed_at_ms=61_500, deadline_ms=60_000)
    m.group_closed("METRICS-LAG", "timeout", closed_at_ms=59_000, deadline_ms=60_000)  # 0
    m.group_closed("METRICS-LAG", "forced", closed_at_ms=59_000)  # no deadline: no lag
    assert m.sample_value("dicom_adapter_group_close_lag_seconds_count", labels) == count + 2
    assert m.sample_value("dicom_adapter_group_close_lag_seconds_sum", labels) == total + 1.5
    le_1s = m.sample_value("dicom_adapter_group_close_lag_seconds_bucket", {**labels, "le": "1.0"})
    assert le_1s >= 1  # the early close, at 0 s


def test_closed_groups_are_counted_by_reason() -> None:
    forced = {"ae_title": "METRICS-WHY", "reason": "forced"}
    before = m.sample_value("dicom_adapter_groups_closed_total", forced)
    m.group_closed("METRICS-WHY", "forced", closed_at_ms=1)
    m.group_closed("METRICS-WHY", "max_age", closed_at_ms=1)
    assert m.sample_value("dicom_adapter_groups_closed_total", forced) == before + 1


def test_job_outcomes_by_outcome_and_priority() -> None:
    labels = {"outcome": "dead_lettered", "priority": "immediate"}
    before = m.sample_value("dicom_adapter_jobs_total", labels)
    m.job_outcome("dead_lettered", "immediate")
    assert m.sample_value("dicom_adapter_jobs_total", labels) == before + 1
    with pytest.raises(ValueError, match="not one of submitted, failed, dead_lettered"):
        m.job_outcome("lost", "normal")  # type: ignore[arg-type]


def test_attempts_bytes_and_ignored() -> None:
    attempts = m.sample_value("dicom_adapter_submit_attempts_total")
    reclaimed = m.sample_value("dicom_adapter_reclaimed_bytes_total")
    ignored_labels = {"ae_title": "METRICS-IGN", "reason": "missing_group_tag"}
    ignored = m.sample_value("dicom_adapter_instances_ignored_total", ignored_labels)
    m.submit_attempt()
    m.bytes_reclaimed(1_000)
    m.bytes_reclaimed(0)
    m.bytes_reclaimed(-5)
    m.instances_ignored("METRICS-IGN", "missing_group_tag")
    assert m.sample_value("dicom_adapter_submit_attempts_total") == attempts + 1
    assert m.sample_value("dicom_adapter_reclaimed_bytes_total") == reclaimed + 1_000
    assert m.sample_value("dicom_adapter_instances_ignored_total", ignored_labels) == ignored + 1


def test_consumer_lag_per_partition_and_forgotten_on_revocation() -> None:
    labels = {"group": "metrics-g", "topic": "metrics.instances", "partition": "3"}
    m.set_consumer_lag("metrics-g", "metrics.instances", 3, high_watermark=120, position=100)
    assert m.sample_value("dicom_adapter_consumer_lag", labels) == 20
    m.set_consumer_lag("metrics-g", "metrics.instances", 3, high_watermark=120, position=125)
    assert m.sample_value("dicom_adapter_consumer_lag", labels) == 0
    m.forget_partition("metrics-g", "metrics.instances", 3)
    assert m.REGISTRY.get_sample_value("dicom_adapter_consumer_lag", labels) is None
    m.forget_partition("metrics-g", "metrics.instances", 3)  # twice is fine


def test_process_info_defaults_to_the_installed_version() -> None:
    from importlib.metadata import version

    m.set_process_info("scp-9", "scp")
    labels = {"adapter_id": "scp-9", "role": "scp", "version": version("dicom-stream-adapter")}
    assert m.sample_value("dicom_adapter_process_info", labels) == 1


def test_exposition_names_every_metric() -> None:
    m.instance_received("METRICS-EXPO")  # labelled metrics appear once they have a series
    text = generate_latest(m.REGISTRY).decode()
    for name in EXPECTED_NAMES:
        base = re.escape(name.removesuffix("_total"))
        assert re.search(rf"^# TYPE {base}(_total)? ", text, re.MULTILINE), name
    assert "_created" not in text  # one series per counter, not two
