"""Apache Kafka jars from Maven Central: where they are cached and how they are fetched.

The broker is assembled from ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies (plus ``slf4j-simple``), resolved by Maven from the small pom packaged
next to this module (``kafka-pom.xml``). Nothing is downloaded from Apache mirrors.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from streams.errors import BrokerError

log = logging.getLogger(__name__)

#: The Apache Kafka release fetched and started unless told otherwise.
KAFKA_VERSION = "4.1.1"

#: Overrides the root of the adapter's cache (default ``~/.cache/dicom-adapter``).
CACHE_ENV = "DICOM_ADAPTER_CACHE"

_MVN_TIMEOUT_S = 900
_KAFKA_JAR = re.compile(r"^kafka_2\.13-(?P<version>\d[\w.\-]*)\.jar$")


_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:[-.][A-Za-z0-9]+)*$")


def is_kafka_version(text: str) -> bool:
    """Whether ``text`` looks like a Kafka release (``4.1.1``, ``4.2.0-rc1``)."""
    return bool(_VERSION.match(text))


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """The adapter's cache folder: ``$DICOM_ADAPTER_CACHE`` or ``~/.cache/dicom-adapter``."""
    env = os.environ if env is None else env
    override = env.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "dicom-adapter"


def kafka_libs_dir(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Where the jars of Kafka ``version`` live: ``<cache>/kafka/<version>/libs``.

    ``cache_dir``, when given, is the ``libs`` folder itself.
    """
    if cache_dir is not None:
        return Path(cache_dir)
    return cache_root() / "kafka" / version / "libs"


def jars_present(libs: Path, version: str = KAFKA_VERSION) -> bool:
    """Whether ``libs`` holds a complete resolution of Kafka ``version``.

    The folder is only ever created by an atomic rename after Maven succeeded, so the
    server jar plus the Scala runtime it needs are a sufficient sign.
    """
    return (libs / f"kafka_2.13-{version}.jar").is_file() and any(libs.glob("scala-library-*.jar"))


def kafka_version_of(libs: Path) -> str | None:
    """The Kafka version of the server jar in ``libs`` (``None`` if there is none)."""
    for jar in sorted(libs.glob("kafka_2.13-*.jar")):
        match = _KAFKA_JAR.match(jar.name)
        if match:
            return match.group("version")
    return None


def find_java(env: Mapping[str, str] | None = None) -> str | None:
    """The ``java`` launcher: ``$JAVA_HOME/bin/java`` if set and executable, else PATH."""
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java", path=env.get("PATH"))


def fetch_kafka_jars(
    cache_dir: Path | None = None,
    version: str = KAFKA_VERSION,
    *,
    mvn: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Resolve Kafka ``version`` and its runtime dependencies into the cache; return it.

    Idempotent: when the jars are already there nothing runs. Maven writes into a
    temporary sibling folder that is renamed into place only after it succeeded, so an
    interrupted fetch never leaves a half-filled cache behind.

    Raises :class:`BrokerError` naming the fix when Maven or Java is missing or Maven
    fails (with the tail of its output). ``progress`` is called with the name of each
    file Maven has downloaded, as it goes.
    """
    if not is_kafka_version(version):
        raise BrokerError(f"{version!r} is not a Kafka version (expected e.g. {KAFKA_VERSION})")
    libs = kafka_libs_dir(version, cache_dir)
    if jars_present(libs, version):
        log.debug("Kafka %s jars already in %s", version, libs)
        return libs
    mvn_path = mvn or shutil.which("mvn")
    if mvn_path is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH, so the Apache Kafka jars cannot be fetched: "
            "install it (Debian: apt-get install -y maven) and run "
            "'dicom-adapter broker fetch' again"
        )
    if find_java() is None:
        raise BrokerError(
            "Java is not installed (no 'java' on PATH or in $JAVA_HOME): install a Java 17+ "
            "runtime (Debian: apt-get install -y openjdk-17-jre-headless)"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".libs-", dir=libs.parent))
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", version, libs)
    try:
        pom = importlib.resources.files("streams.broker").joinpath("kafka-pom.xml")
        with importlib.resources.as_file(pom) as pom_path:
            cmd = [
                mvn_path,
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(pom_path),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
                f"-Dkafka.version={version}",
            ]
            returncode, output = _run_maven(cmd, progress)
            if returncode is None:
                raise BrokerError(
                    f"Maven did not finish fetching Kafka {version} within {_MVN_TIMEOUT_S} s; "
                    "check access to Maven Central and try again"
                )
        if returncode != 0 or not jars_present(staging, version):
            tail = _maven_errors(output)
            raise BrokerError(
                f"Maven could not fetch Apache Kafka {version} (exit {returncode}); "
                f"check the version exists on Maven Central and the network. Maven said:\n{tail}"
            )
        if libs.exists():
            # A previous incomplete folder (not written by us) is replaced.
            shutil.rmtree(libs)
        os.replace(staging, libs)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("Apache Kafka %s jars ready in %s", version, libs)
    return libs


_DOWNLOADED = re.compile(r"^(?:\[INFO\] )?Downloaded from \S+: (\S+)")


def _run_maven(
    cmd: Sequence[str], progress: Callable[[str], None] | None
) -> tuple[int | None, str]:
    """Run Maven, reporting each downloaded file (its file name) to ``progress``;
    ``(exit code, output)``, the code ``None`` when it was stopped at the time limit."""
    expired = threading.Event()
    lines: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:

        def stop() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(_MVN_TIMEOUT_S, stop)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                found = _DOWNLOADED.match(_ANSI.sub("", line))
                if found and progress is not None:
                    progress(found.group(1).rsplit("/", 1)[-1])
            returncode = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
    return (None if expired.is_set() else returncode), "".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BOILERPLATE = ("To see the full stack trace", "Re-run Maven", "For more information", "[Help")


def _maven_errors(text: str, count: int = 4) -> str:
    """The informative ``[ERROR]`` lines of Maven's output (else its last lines)."""
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    errors = [
        line
        for line in lines
        if line.startswith("[ERROR]")
        and line[len("[ERROR]") :].strip()
        and not line[len("[ERROR]") :].strip().startswith(_BOILERPLATE)
    ]
    chosen = errors[:count] or [line for line in lines if line.strip()][-count:]
    return "\n".join(chosen) if chosen else "(no output)"
