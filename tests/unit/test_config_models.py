"""The config models: defaults, rules and one clear line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.config import (
    AdapterConfig,
    AeTitleConfig,
    ScpConfig,
    SubmitterConfig,
    build_config,
    format_validation_error,
)
from streams.config.loader import ConfigSource
from streams.errors import ConfigError


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(ConfigSource(data=data))
    return info.value.problems


def one_problem(data: dict[str, Any]) -> str:
    lines = problems(data)
    assert len(lines) == 1, lines
    return lines[0]


def ae(title: str, **extra: Any) -> dict[str, Any]:
    return {"ae_title": title, "processorSettings": {"pipeline-x": "p"}, **extra}


def test_defaults() -> None:
    config = AdapterConfig()
    assert config.adapter_id == "adapter-1"
    assert config.storage == Path("data")
    assert config.kafka.bootstrap_servers is None
    assert (config.kafka.topic_prefix, config.kafka.partitions) == ("dicom", 12)
    assert config.kafka.replication_factor == 1
    assert (config.kafka.instances_topic, config.kafka.jobs_topic) == (
        "dicom.instances",
        "dicom.jobs",
    )
    scp = config.scp
    assert (scp.host, scp.port, scp.max_associations, scp.max_pdu) == ("0.0.0.0", 11112, 25, 0)
    assert scp.reject_unknown_sources is False
    assert (scp.sources, scp.ae_titles) == ((), ())
    assert (scp.watermark_percent, scp.reserve_space_gb) == (85, 5.0)
    assert config.processor.grace_ms == 200  # the bus clock needs no room for clock skew
    sub = config.submitter
    assert (sub.kind, sub.url, sub.max_attempts, sub.timeout_s) == ("kafka", None, 5, 30)
    assert (sub.backoff_initial_s, sub.backoff_max_s, sub.payload_retention_hours) == (1, 60, 24)
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)


def test_ae_title_entry_defaults_and_alias() -> None:
    entry = AeTitleConfig.model_validate({"ae_title": "CLARA-CT"})
    assert entry.processor == "aetitle"
    assert entry.processor_settings == {}
    settings = {"timeout": 60, "pipeline-b": "2", "groupBy": "Study", "pipeline-a": "1"}
    entry = AeTitleConfig.model_validate({"ae_title": "X", "processorSettings": settings})
    assert list(entry.processor_settings) == ["timeout", "pipeline-b", "groupBy", "pipeline-a"]


def test_frozen() -> None:
    config = AdapterConfig()
    with pytest.raises(ValidationError):
        config.adapter_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.scp.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "path", "allowed"),
    [
        ({"adapterid": "a"}, "adapterid", "adapter_id"),
        ({"kafka": {"partitons": 3}}, "kafka.partitons", "partitions"),
        ({"scp": {"prot": 1}}, "scp.prot", "port"),
        ({"scp": {"sources": [{"ae_title": "M1", "ip": "x"}]}}, "scp.sources[0] (M1): ip", "host"),
        (
            {"scp": {"ae_titles": [ae("CLARA-CT", procesor="aetitle")]}},
            "scp.ae_titles[0] (CLARA-CT): procesor",
            "processor",
        ),
        ({"processor": {"grace": 1}}, "processor.grace", "grace_ms"),
        ({"submitter": {"uri": "http://h"}}, "submitter.uri", "url"),
        ({"http": {"bind": "x"}}, "http.bind", "host"),
    ],
)
def test_unknown_keys_at_every_level_name_the_key(
    data: dict[str, Any], path: str, allowed: str
) -> None:
    line = one_problem(data)
    assert line.startswith(f"{path}: unknown key")
    assert allowed in line


def test_unknown_key_suggests_the_right_one() -> None:
    assert "(did you mean 'partitions'?)" in one_problem({"kafka": {"partitons": 3}})


@pytest.mark.parametrize(
    ("data", "start", "fragment"),
    [
        ({"scp": {"port": 70000}}, "scp.port: 70000", "at most 65535"),
        ({"scp": {"port": -1}}, "scp.port: -1", "at least 0"),
        ({"scp": {"port": "abc"}}, "scp.port: 'abc'", "whole number"),
        ({"scp": {"port": True}}, "scp.port: true", "boolean"),
        ({"scp": {"max_associations": 0}}, "scp.max_associations: 0", "at least 1"),
        ({"scp": {"watermark_percent": 101}}, "scp.watermark_percent: 101", "at most 100"),
        ({"scp": {"watermark_percent": 0}}, "scp.watermark_percent: 0", "at least 1"),
        ({"scp": {"reserve_space_gb": -1}}, "scp.reserve_space_gb: -1", "at least 0"),
        ({"scp": {"reject_unknown_sources": "maybe"}}, "scp.reject_unknown_sources", "true or"),
        ({"kafka": {"partitions": 0}}, "kafka.partitions: 0", "at least 1"),
        ({"kafka": {"topic_prefix": "a b"}}, "kafka.topic_prefix: 'a b'", "letters, digits"),
        ({"kafka": {"bootstrap_servers": "localhost"}}, "kafka.bootstrap_servers", "host:port"),
        ({"kafka": {"bootstrap_servers": ""}}, "kafka.bootstrap_servers: is empty", "embedded"),
        ({"kafka": "x"}, "kafka: expected a mapping", "'x'"),
        ({"adapter_id": "a/b"}, "adapter_id: 'a/b'", "adapter-1"),
        ({"adapter_id": 7}, "adapter_id: 7 is not text", "quote it"),
        ({"storage": ""}, "storage: is empty", "./data"),
        ({"submitter": {"kind": "ftp"}}, "submitter.kind: 'ftp'", "'kafka' or 'http'"),
        ({"submitter": {"max_attempts": 0}}, "submitter.max_attempts: 0", "at least 1"),
        ({"submitter": {"timeout_s": 0}}, "submitter.timeout_s: 0", "more than 0"),
        ({"submitter": {"url": "ftp://h/x"}}, "submitter.url: 'ftp://h/x'", "http(s) URL"),
        ({"submitter": {"kind": "http"}}, "submitter.url: is required when kind is http", "e.g."),
        ({"http": {"port": 65536}}, "http.port: 65536", "at most 65535"),
        ({"scp": {"sources": {"ae_title": "M"}}}, "scp.sources: expected a list", "a mapping"),
        ({"scp": {"ae_titles": [{}]}}, "scp.ae_titles[0].ae_title: is required", "add it"),
        ({"scp": {"ae_titles": [{"ae_title": None}]}}, "scp.ae_titles[0].ae_title", "no value"),
    ],
)
def test_bad_values_name_key_value_and_fix(data: dict[str, Any], start: str, fragment: str) -> None:
    line = one_problem(data)
    assert line.startswith(start), line
    assert fragment in line
    assert "Input should" not in line and "pydantic" not in line


@pytest.mark.parametrize(
    ("title", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("A" * 17, "at most 16"),
        ("CT\\1", "backslash"),
        ("CT\t1", "control"),
        ("CT\x001", "control"),
        ("CTÉ", "ASCII"),
        (" CT", "leading or trailing spaces"),
        ("CT ", "leading or trailing spaces"),
    ],
)
def test_ae_title_rules(title: str, fragment: str) -> None:
    line = one_problem({"scp": {"ae_titles": [ae(title)]}})
    assert line.startswith(f"scp.ae_titles[0] ({title}): ae_title: ")
    assert fragment in line
    line = one_problem({"scp": {"sources": [{"ae_title": title}]}})
    assert line.startswith(f"scp.sources[0] ({title}): ae_title: ")


def test_ae_titles_may_be_16_characters() -> None:
    config = build_config(ConfigSource(data={"scp": {"ae_titles": [ae("A" * 16)]}}))
    assert config.scp.ae_titles[0].ae_title == "A" * 16


def test_ae_titles_unique_case_sensitive() -> None:
    data = {"scp": {"ae_titles": [ae("CLARA"), ae("clara"), ae("CLARA")]}}
    line = one_problem(data)
    assert line.startswith("scp.ae_titles[2] (CLARA): ae_title: 'CLARA' is already used by ")
    assert "scp.ae_titles[0]" in line
    assert "case-sensitive" in line


def test_sources_unique_and_hosts() -> None:
    sources = [{"ae_title": "M1", "host": "10.0.0.5"}, {"ae_title": "M1"}, {"ae_title": "m1"}]
    line = one_problem({"scp": {"sources": sources}})
    assert line.startswith("scp.sources[1] (M1): ae_title: 'M1' is already used by scp.sources[0]")
    scp = ScpConfig.model_validate({"sources": sources[::2]})
    assert [(s.ae_title, s.host) for s in scp.sources] == [("M1", "10.0.0.5"), ("m1", None)]


def test_duplicates_reported_with_other_problems() -> None:
    data = {"scp": {"port": "x", "ae_titles": [ae("A"), ae("A", colour=1)]}}
    lines = problems(data)
    assert len(lines) == 3
    assert any(line.startswith("scp.port") for line in lines)
    assert any(line.startswith("scp.ae_titles[1] (A): colour: unknown key") for line in lines)
    assert any("already used" in line for line in lines)


def test_rejecting_unknown_sources_needs_sources() -> None:
    line = one_problem({"scp": {"reject_unknown_sources": True}})
    assert line.startswith("scp.reject_unknown_sources: is true but scp.sources is empty")
    ok = {"reject_unknown_sources": True, "sources": [{"ae_title": "M1", "host": "10.0.0.5"}]}
    assert ScpConfig.model_validate(ok).reject_unknown_sources


def test_processor_settings_must_be_a_mapping_with_text_keys() -> None:
    line = one_problem({"scp": {"ae_titles": [{"ae_title": "CT", "processorSettings": [1]}]}})
    assert line.startswith("scp.ae_titles[0] (CT): processorSettings: expected a mapping")
    line = one_problem({"scp": {"ae_titles": [{"ae_title": "CT", "processorSettings": {1: "x"}}]}})
    assert (
        line == "scp.ae_titles[0] (CT): processorSettings: key 1 is not text; quote it (e.g. '1')"
    )


def test_backoff_max_not_below_initial() -> None:
    line = one_problem({"submitter": {"backoff_initial_s": 10, "backoff_max_s": 5}})
    assert line.startswith("submitter.backoff_max_s: 5 is below backoff_initial_s (10)")


def test_http_submitter_url_and_secret_masked_in_repr() -> None:
    url = "https://svc:s3cret@platform:8443/jobs?token=abc&x=1"
    sub = SubmitterConfig.model_validate({"kind": "http", "url": url})
    assert sub.url == url
    assert "s3cret" not in repr(sub) and "abc" not in repr(sub)
    assert "svc:***@platform:8443" in repr(sub) and "token=***" in repr(sub)
    config = AdapterConfig.model_validate({"submitter": {"kind": "http", "url": url}})
    assert "s3cret" not in repr(config) and "s3cret" not in str(config)


def test_secret_masked_in_problem_lines() -> None:
    line = one_problem({"submitter": {"url": "ftp://u:s3cret@h/"}})
    assert "s3cret" not in line
    assert "u:***@h" in line


def test_every_problem_at_once() -> None:
    data = {
        "adapter_id": "",
        "kafka": {"partitions": 0, "x": 1},
        "scp": {"port": 99999, "ae_titles": [ae("A" * 20)]},
        "submitter": {"kind": "http"},
    }
    assert len(problems(data)) == 6


def test_reserved_bytes_as_clara_storage_info_provider() -> None:
    gb = 10**9
    # Clara StorageInfoProviderTest, total 10 GB: reserved = max(total x (1 - wm), reserve).
    scp = ScpConfig(watermark_percent=90, reserve_space_gb=1)
    assert scp.reserved_bytes(10 * gb) == 1 * gb
    assert ScpConfig(watermark_percent=10, reserve_space_gb=1).reserved_bytes(10 * gb) == 9 * gb
    assert ScpConfig(watermark_percent=99, reserve_space_gb=9).reserved_bytes(10 * gb) == 9 * gb


def test_formatter_without_model_or_data() -> None:
    with pytest.raises(ValidationError) as info:
        AdapterConfig.model_validate({"scp": {"bogus": 1, "port": "x"}})
    assert sorted(format_validation_error(info.value)) == [
        "scp.bogus: unknown key; remove it",
        "scp.port: 'x' is not a whole number; use an integer",
    ]
