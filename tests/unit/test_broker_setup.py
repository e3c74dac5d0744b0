"""Broker set-up without starting one: prerequisites, choice of broker, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.broker import (
    KafkaBroker,
    TansuBroker,
    fetch_kafka_jars,
    jars_present,
    kafka_libs_dir,
    kafka_version_of,
    new_cluster_id,
    select_embedded_broker,
)
from streams.errors import BrokerError, ConfigError
from streams.kafka import topic_names


def fake_libs(folder: Path, version: str = "4.1.1") -> Path:
    """A libs folder with the jar names the launcher looks for (contents irrelevant here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"kafka_2.13-{version}.jar").write_bytes(b"")
    (folder / "scala-library-2.13.16.jar").write_bytes(b"")
    return folder


def test_cache_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DICOM_ADAPTER_CACHE", str(tmp_path))
    assert kafka_libs_dir("4.0.0") == tmp_path / "kafka" / "4.0.0" / "libs"


def test_jars_are_recognised_by_version(tmp_path: Path) -> None:
    libs = fake_libs(tmp_path / "libs")
    assert jars_present(libs, "4.1.1")
    assert not jars_present(libs, "4.0.0")
    assert kafka_version_of(libs) == "4.1.1"


def test_fetch_is_a_no_op_when_the_jars_are_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    libs = fake_libs(tmp_path / "libs")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no mvn, no java: must not need them
    assert fetch_kafka_jars(libs) == libs


def test_fetch_without_maven_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BrokerError, match=r"apt-get install -y maven"):
        fetch_kafka_jars(tmp_path / "libs")
    assert not (tmp_path / "libs").exists()


async def test_kafka_without_java_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    broker = KafkaBroker(tmp_path / "data", libs_dir=fake_libs(tmp_path / "libs"))
    with pytest.raises(BrokerError, match=r"Java is not installed.*openjdk-17"):
        await broker.start()
    assert not broker.running


async def test_kafka_without_jars_says_run_broker_fetch(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "data", libs_dir=tmp_path / "nothing", java="/usr/bin/java")
    with pytest.raises(BrokerError, match=r"dicom-adapter broker fetch"):
        await broker.start()


def test_embedded_prefers_apache_kafka(tmp_path: Path) -> None:
    libs = fake_libs(tmp_path / "libs")
    broker = select_embedded_broker(tmp_path / "data", java="/usr/bin/java", libs_dir=libs)
    assert isinstance(broker, KafkaBroker)
    assert broker.description == "Apache Kafka 4.1.1 (KRaft)"


def test_embedded_falls_back_to_tansu_without_java(tmp_path: Path) -> None:
    libs = fake_libs(tmp_path / "libs")
    broker = select_embedded_broker(tmp_path / "data", java=None, tansu="/bin/true", libs_dir=libs)
    assert isinstance(broker, TansuBroker)


def test_embedded_falls_back_to_tansu_without_jars(tmp_path: Path) -> None:
    broker = select_embedded_broker(
        tmp_path / "data", java="/usr/bin/java", tansu="/bin/true", libs_dir=tmp_path / "none"
    )
    assert isinstance(broker, TansuBroker)


def test_no_embedded_broker_names_both_fixes(tmp_path: Path) -> None:
    with pytest.raises(BrokerError) as caught:
        select_embedded_broker(tmp_path, java=None, tansu=None, libs_dir=tmp_path / "none")
    message = str(caught.value)
    assert "dicom-adapter broker fetch" in message
    assert "dicom-stream-adapter[embedded]" in message


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) and not i.startswith("-") for i in ids)


def test_topic_names_follow_the_prefix() -> None:
    names = topic_names("dicom")
    assert (names.instances, names.jobs) == ("dicom.instances", "dicom.jobs")
    assert (names.sources, names.exports) == ("dicom.sources", "dicom.exports")
    assert names.all() == (
        "dicom.instances",
        "dicom.jobs",
        "dicom.sources",
        "dicom.exports",
        "dicom.groups",
    )
    with pytest.raises(ConfigError, match=r"kafka\.topic_prefix"):
        topic_names("bad prefix/")
