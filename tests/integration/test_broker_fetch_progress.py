"""``broker fetch`` reports Maven's downloads as they happen (the progress bar's feed),
and still fails with Maven's own error lines (issue 20).

Maven is a stand-in script here: it prints what Maven 3 prints in batch mode for each
transfer and writes the jars where it was told, so the test needs no network.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.broker import fetch_kafka_jars, jars_present
from streams.errors import BrokerError

FAKE_MVN = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac
done
repo=https://repo.maven.apache.org/maven2
k=$repo/org/apache/kafka/kafka_2.13/4.1.1
s=$repo/org/scala-lang/scala-library/2.13.16
echo "[INFO] Scanning for projects..."
echo "[INFO] Downloading from central: $k/kafka_2.13-4.1.1.pom"
echo "[INFO] Downloaded from central: $k/kafka_2.13-4.1.1.pom (4.2 kB at 60 kB/s)"
echo "[INFO] Downloaded from central: $k/kafka_2.13-4.1.1.jar (6.9 MB at 12 MB/s)"
echo "Downloaded from central: $s/scala-library-2.13.16.jar (5.9 MB at 11 MB/s)"
if [ -n "$FAIL" ]; then echo "[ERROR] Failed to execute goal: could not resolve"; exit 1; fi
touch "$out/kafka_2.13-4.1.1.jar" "$out/scala-library-2.13.16.jar"
echo "[INFO] BUILD SUCCESS"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path) -> str:
    path = tmp_path / "bin" / "mvn"
    path.parent.mkdir()
    path.write_text(FAKE_MVN)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_each_downloaded_file_is_reported_as_it_comes(tmp_path: Path, fake_mvn: str) -> None:
    seen: list[str] = []
    libs = fetch_kafka_jars(tmp_path / "cache", "4.1.1", mvn=fake_mvn, progress=seen.append)
    assert jars_present(libs, "4.1.1")
    assert seen == [
        "kafka_2.13-4.1.1.pom",
        "kafka_2.13-4.1.1.jar",
        "scala-library-2.13.16.jar",
    ]


def test_a_failing_maven_still_says_why(
    tmp_path: Path, fake_mvn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL", "1")
    seen: list[str] = []
    with pytest.raises(BrokerError) as info:
        fetch_kafka_jars(tmp_path / "cache", "4.1.1", mvn=fake_mvn, progress=seen.append)
    assert "[ERROR] Failed to execute goal: could not resolve" in str(info.value)
    assert "(exit 1)" in str(info.value)
    assert len(seen) == 3
    assert not any((tmp_path / "cache").rglob("*.jar"))  # no half-filled cache left
