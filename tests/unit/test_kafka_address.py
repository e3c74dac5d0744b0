"""Which Kafka a command talks to when none is given: the running embedded broker of
the config's storage folder (issue 20: `events` after `run` said "no Kafka address")."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.commands.kafka_args import kafka_address
from streams.config import AdapterConfig
from streams.errors import UsageError


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP listener standing in for the broker's port (only accept matters)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def config(storage: Path, bootstrap: str | None = None) -> AdapterConfig:
    return AdapterConfig.model_validate(
        {"storage": str(storage), "kafka": {"bootstrap_servers": bootstrap}}
    )


def record(storage: Path, port: int) -> None:
    folder = storage / "kafka"
    folder.mkdir(parents=True)
    state = {"port": port, "controller_port": 1, "version": "4.1.1"}
    (folder / "broker.json").write_text(json.dumps(state), encoding="utf-8")


def test_given_address_wins(tmp_path: Path, listener: int) -> None:
    record(tmp_path, listener)
    assert kafka_address(config(tmp_path, "kafka:9092"), "other:9092") == "other:9092"
    assert kafka_address(config(tmp_path, "kafka:9092"), None) == "kafka:9092"


def test_running_embedded_broker_is_found_and_named(
    tmp_path: Path, listener: int, capsys: pytest.CaptureFixture[str]
) -> None:
    record(tmp_path, listener)
    assert kafka_address(config(tmp_path), None) == f"127.0.0.1:{listener}"
    err = capsys.readouterr().err
    assert err == (
        f"dicom-adapter: using the embedded broker of {tmp_path / 'kafka'} "
        f"at 127.0.0.1:{listener}\n"
    )


def test_stopped_embedded_broker_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    record(tmp_path, port)
    with pytest.raises(UsageError) as info:
        kafka_address(config(tmp_path), None)
    message = str(info.value)
    assert f"(last at 127.0.0.1:{port}) is not running" in message
    assert "--kafka HOST:PORT" in message and "dicom-adapter run" in message


@pytest.mark.parametrize("content", [None, "not json", '{"port": "x"}', "[]"])
def test_no_usable_broker_json_is_a_usage_error(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "kafka").mkdir()
        (tmp_path / "kafka" / "broker.json").write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        kafka_address(config(tmp_path), None)
    assert f"no embedded broker in {tmp_path / 'kafka'}" in str(info.value)
    assert info.value.exit_code == 2
