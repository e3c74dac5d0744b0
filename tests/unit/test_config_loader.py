"""Loading config files (YAML and JSON) and ``DICOM_ADAPTER_*`` environment overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.config import AdapterConfig, load_config, read_source
from streams.config.yamlio import parse_scalar
from streams.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"

CONFIG = """\
adapter_id: adapter-7
storage: /var/lib/dicom
kafka:
  topic_prefix: hospital
scp:
  port: 11112
  sources: [{ae_title: MODALITY1, host: 10.0.0.5}]
  ae_titles:
    - ae_title: CLARA-CT
      processorSettings:
        groupBy: 00100020
        timeout: 60
        pipeline-lung: 8abf244aff7647989d4f6b3987a85759
"""


def write(tmp_path: Path, text: str, name: str = "adapter.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.problems


def test_yaml_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG), {})
    assert config.adapter_id == "adapter-7"
    assert config.storage == Path("/var/lib/dicom")
    assert config.kafka.topic_prefix == "hospital"
    assert config.scp.sources[0].host == "10.0.0.5"
    entry = config.scp.ae_titles[0]
    assert entry.ae_title == "CLARA-CT"
    # A leading-zero tag stays text (YAML 1.1 would read 00100020 as octal 32784).
    assert entry.processor_settings["groupBy"] == "00100020"
    assert entry.processor_settings["timeout"] == 60
    assert list(entry.processor_settings) == ["groupBy", "timeout", "pipeline-lung"]


def test_json_is_accepted(tmp_path: Path) -> None:
    data = {"scp": {"port": 104, "ae_titles": [{"ae_title": "CT", "processorSettings": {}}]}}
    config = load_config(write(tmp_path, json.dumps(data), "adapter.json"), {})
    assert config.scp.port == 104
    assert config.scp.ae_titles[0].ae_title == "CT"


def test_no_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(None, {}) == AdapterConfig()
    assert load_config(write(tmp_path, "{}\n"), {}) == AdapterConfig()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file_is_one_line_not_the_defaults(tmp_path: Path, text: str) -> None:
    """Issue 8 (bad configs): an empty file named on purpose is a mistake (truncated,
    not yet written); the defaults it stood for have no AE title, so the SCP would
    refuse every sender."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == [
        f"config file {path}: is empty; write the settings in it (see "
        "docs/configuration.md), or give no config file to run with the defaults"
    ]


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "adapter_id: from-env-path\n")
    assert load_config(None, {"DICOM_ADAPTER_CONFIG": str(path)}).adapter_id == "from-env-path"
    other = write(tmp_path, "adapter_id: explicit\n", "other.yaml")
    env = {"DICOM_ADAPTER_CONFIG": str(path)}
    assert load_config(other, env).adapter_id == "explicit"


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [f"config file {missing}: not found; check the path"]


def test_directory_is_one_line(tmp_path: Path) -> None:
    [line] = problems_of(tmp_path)
    assert "is a directory" in line


def test_bad_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    [line] = problems_of(write(tmp_path, "scp:\n  port: [1, 2\nkafka: {}\n"))
    assert line.startswith("config file ")
    assert "not valid YAML at line" in line
    assert "\n" not in line


def test_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("adapter_id: caf\xe9\n".encode("latin-1"))
    [line] = problems_of(path)
    assert "not UTF-8" in line


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    [line] = problems_of(write(tmp_path, "- a\n- b\n"))
    assert "the top level is a list, not a mapping" in line


def test_duplicate_keys_are_reported_with_other_problems(tmp_path: Path) -> None:
    text = (
        "scp:\n"
        "  port: x\n"
        "  ae_titles:\n"
        "    - ae_title: CT\n"
        "      processorSettings:\n"
        "        pipeline-lung: a\n"
        "        pipeline-lung: b\n"
    )
    lines = problems_of(write(tmp_path, text))
    assert len(lines) == 2
    assert "line 7: key 'pipeline-lung' repeats the one on line 6" in lines[0]
    assert lines[1].startswith("scp.port: 'x'")


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = "base: &b {port: 1}\n"
    data = read_source(write(tmp_path, text + "scp:\n  <<: *b\n  port: 2\n"), {}).data
    assert data["scp"] == {"port": 2}


# --- environment overrides ------------------------------------------------------------


def test_env_overrides_top_level_and_nested(tmp_path: Path) -> None:
    env = {
        "DICOM_ADAPTER_ADAPTER_ID": "adapter-9",
        "DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS": "broker:9092",
        "DICOM_ADAPTER_SCP__PORT": "4242",
        "DICOM_ADAPTER_SCP__REJECT_UNKNOWN_SOURCES": "true",
        "DICOM_ADAPTER_SUBMITTER__BACKOFF_MAX_S": "2.5",
        "DICOM_ADAPTER_STORAGE": "/srv/dicom",
        "UNRELATED": "x",
    }
    config = load_config(write(tmp_path, CONFIG), env)
    assert config.adapter_id == "adapter-9"
    assert config.kafka.bootstrap_servers == "broker:9092"
    assert config.kafka.topic_prefix == "hospital"  # the rest of the section is kept
    assert config.scp.port == 4242
    assert config.scp.reject_unknown_sources is True
    assert config.submitter.backoff_max_s == 2.5
    assert config.storage == Path("/srv/dicom")


def test_env_overrides_without_a_file() -> None:
    config = load_config(None, {"DICOM_ADAPTER_HTTP__PORT": "0", "DICOM_ADAPTER_SCP__HOST": "::"})
    assert config.http.port == 0
    assert config.scp.host == "::"


def test_env_overrides_list_entries_and_camel_case_keys(tmp_path: Path) -> None:
    env = {
        "DICOM_ADAPTER_SCP__AE_TITLES__0__PROCESSORSETTINGS__TIMEOUT": "120",
        "DICOM_ADAPTER_SCP__AE_TITLES__0__PROCESSORSETTINGS__GROUPBY": "Series",
        "DICOM_ADAPTER_SCP__SOURCES__0__HOST": "10.0.0.6",
    }
    config = load_config(write(tmp_path, CONFIG), env)
    settings = config.scp.ae_titles[0].processor_settings
    assert settings == {
        "groupBy": "Series",
        "timeout": 120,
        "pipeline-lung": "8abf244aff7647989d4f6b3987a85759",
    }
    assert config.scp.sources[0].host == "10.0.0.6"


def test_env_problems_name_the_variable(tmp_path: Path) -> None:
    env = {
        "DICOM_ADAPTER_SCP__PROT": "1",
        "DICOM_ADAPTER_HTTP__PORT": "abc",
        "DICOM_ADAPTER_SCP__AE_TITLES__3__PROCESSOR": "x",
        "DICOM_ADAPTER_SCP__AE_TITLES__FIRST__PROCESSOR": "x",
        "DICOM_ADAPTER_KAFKA____PORT": "1",
        "DICOM_ADAPTER_ADAPTER_ID__X": "1",
    }
    lines = problems_of(write(tmp_path, CONFIG), env)
    assert len(lines) == 6, lines
    text = "\n".join(lines)
    assert "adapter_id is 'adapter-7', not a mapping" in text
    assert "DICOM_ADAPTER_KAFKA____PORT: empty key" in text
    assert "scp.ae_titles has 1 entry, so there is no index 3" in text
    assert "scp.ae_titles is a list; select an entry by index" in text
    assert (
        "http.port: 'abc' is not a whole number; use an integer "
        "(set by environment variable DICOM_ADAPTER_HTTP__PORT)"
    ) in lines
    assert any(
        line.startswith("scp.prot: unknown key (did you mean 'port'?)")
        and line.endswith("(set by environment variable DICOM_ADAPTER_SCP__PROT)")
        for line in lines
    )


def test_kafka_bootstrap_servers_fallback(tmp_path: Path) -> None:
    fallback = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
    assert load_config(None, fallback).kafka.bootstrap_servers == "127.0.0.1:19092"
    assert load_config(write(tmp_path, CONFIG), fallback).kafka.topic_prefix == "hospital"
    # The config file wins over KAFKA_BOOTSTRAP_SERVERS ...
    with_file = write(tmp_path, "kafka:\n  bootstrap_servers: file:9092\n", "k.yaml")
    assert load_config(with_file, fallback).kafka.bootstrap_servers == "file:9092"
    # ... and DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS wins over both.
    env = {**fallback, "DICOM_ADAPTER_KAFKA__BOOTSTRAP_SERVERS": "env:9092"}
    assert load_config(with_file, env).kafka.bootstrap_servers == "env:9092"
    assert load_config(None, {"KAFKA_BOOTSTRAP_SERVERS": " "}).kafka.bootstrap_servers is None


def test_bad_kafka_bootstrap_servers_names_the_variable() -> None:
    [line] = problems_of(None, {"KAFKA_BOOTSTRAP_SERVERS": "nohost"})
    assert line.startswith("kafka.bootstrap_servers: 'nohost' in 'nohost' is not host:port")
    assert line.endswith("(set by environment variable KAFKA_BOOTSTRAP_SERVERS)")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60", 60),
        ("2.5", 2.5),
        ("true", True),
        ("false", False),
        ("", None),
        ("null", None),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("00100020", "00100020"),
        ("0010,0020", "0010,0020"),
        ("'60'", "60"),
        ("[a, b]", "[a, b]"),  # not a scalar: kept as text
        ("a: b", "a: b"),
        ("[unclosed", "[unclosed"),
    ],
)
def test_env_values_are_yaml_scalars(text: str, value: object) -> None:
    assert parse_scalar(text) == value
    assert type(parse_scalar(text)) is type(value)


# --- the examples users copy ----------------------------------------------------------


@pytest.mark.parametrize("name", ["scenario1.yaml", "scenario2.yaml"])
def test_examples_load(name: str) -> None:
    config = load_config(EXAMPLES / name, {})
    assert config.scp.ae_titles


@pytest.mark.parametrize("name", ["scenario1.yaml", "scenario2.yaml"])
def test_examples_run_with_the_embedded_broker(name: str) -> None:
    # `run --config` on an example starts the embedded broker: no fixed Kafka address
    # (a hard-coded 127.0.0.1:9092 made `run` fail with "cannot create topics").
    assert load_config(EXAMPLES / name, {}).kafka.bootstrap_servers is None


def test_scenario_1_example_settings() -> None:
    entry = load_config(EXAMPLES / "scenario1.yaml", {}).scp.ae_titles[0]
    assert entry.processor == "aetitle"
    assert entry.processor_settings == {
        "groupBy": "Patient",
        "priority": "normal",
        "timeout": 60,
        "pipeline-lung": "8abf244aff7647989d4f6b3987a85759",
        "pipeline-heart": "c5f996a71e1d4959bd6a2c8cf7130f88",
        "pipeline-breast": "eb48c784ef20425580db7d46a30829b2",
    }


def test_scenario_2_example_settings() -> None:
    entry = load_config(EXAMPLES / "scenario2.yaml", {}).scp.ae_titles[0]
    assert entry.processor_settings == {
        "priority": "higher",
        "pipeline-breast": "8abf244aff7647989d4f6b3987a85759",
    }
