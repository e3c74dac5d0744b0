"""Apache Kafka (KRaft, one combined broker+controller node) from the Maven jars.

The data folder keeps everything a restart needs: the formatted log directory (its
``meta.properties`` holds the cluster id), the generated ``server.properties``, the
ports last used (``broker.json``, reused when still free so clients keep their
address) and the broker's own log (``broker.log``). The controller quorum is static
(``controller.quorum.voters``) so a changed controller port never strands the data.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.broker.base import LocalBroker, free_port, port_is_free
from streams.broker.jars import (
    KAFKA_VERSION,
    find_java,
    jars_present,
    kafka_libs_dir,
    kafka_version_of,
)
from streams.broker.secure import SecureBroker
from streams.errors import BrokerError
from streams.kafka.clients import Connection

log = logging.getLogger(__name__)

_FORMAT_TIMEOUT_S = 180
_STATE_FILE = "broker.json"
_NODE_ID = 1

#: Broker settings for a single local node; ``properties=`` overrides any of them.
DEFAULT_PROPERTIES: Mapping[str, str] = {
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
}


def recorded_address(data_dir: Path | str, host: str = "127.0.0.1") -> str | None:
    """``host:port`` the Kafka broker of ``data_dir`` last served on (its ``broker.json``),
    or ``None`` if no broker has run there. It may have stopped since."""
    try:
        state = json.loads((Path(data_dir) / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    port = state.get("port") if isinstance(state, dict) else None
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return f"{host}:{port}"
    return None


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding.

    Kafka refuses ids that start with ``-`` (they read as command-line flags).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaBroker(LocalBroker):
    """A single-node Apache Kafka broker in KRaft mode, run with ``java`` from cached jars.

    ``data_dir`` holds the log directory and survives restarts; storage is formatted only
    the first time. ``port``/``controller_port`` default to the ports used last time if
    still free, else to free loopback ports. ``heap`` is the JVM ``-Xmx``. ``secure``
    serves clients over ``SASL_SSL`` only, with SCRAM users and ACLs
    (:mod:`streams.broker.secure`; the data folder must be new or secure already).
    """

    kind = "kafka"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        host: str = "127.0.0.1",
        version: str = KAFKA_VERSION,
        libs_dir: Path | None = None,
        java: str | None = None,
        heap: str = "512m",
        properties: Mapping[str, str] | None = None,
        start_timeout_s: float = 90.0,
        stop_timeout_s: float = 30.0,
        secure: bool = False,
    ) -> None:
        super().__init__(
            host=host, port=port, start_timeout_s=start_timeout_s, stop_timeout_s=stop_timeout_s
        )
        self.secure = secure
        self.security: SecureBroker | None = None
        self.data_dir = Path(data_dir).resolve()
        self.libs_dir = Path(libs_dir) if libs_dir is not None else kafka_libs_dir(version)
        self._requested_version = version
        self._requested_controller_port = controller_port
        self.controller_port: int | None = None
        self._java = java
        self.heap = heap
        self._properties = dict(properties or {})

    @property
    def version(self) -> str:
        """Kafka version of the jars in use (from the server jar's name)."""
        return kafka_version_of(self.libs_dir) or self._requested_version

    @property
    def description(self) -> str:
        mode = ", SASL_SSL + SCRAM-SHA-512" if self.secure else ""
        return f"Apache Kafka {self.version} (KRaft{mode})"

    @property
    def connection(self) -> Connection:
        """The address; in secure mode, a connection as the ``admin`` super user."""
        if self.security is None:
            return self.bootstrap_servers
        return self.security.connection(self.bootstrap_servers)

    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs``: topic data and cluster metadata."""
        return self.data_dir / "kafka-logs"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def properties_path(self) -> Path:
        """The generated ``server.properties``."""
        return self.data_dir / "server.properties"

    @property
    def cluster_id(self) -> str | None:
        """The cluster id stored in the formatted log directory (``None`` before format)."""
        return _read_properties(self.log_dir / "meta.properties").get("cluster.id")

    # -- LocalBroker -------------------------------------------------------------

    def _prepare(self) -> tuple[int, Sequence[str]]:
        java = self._java or find_java()
        if java is None:
            raise BrokerError(
                "Java is not installed (no 'java' on PATH or in $JAVA_HOME), so Apache Kafka "
                "cannot run: install a Java 17+ runtime "
                "(Debian: apt-get install -y openjdk-17-jre-headless)"
            )
        if not jars_present(self.libs_dir, self._requested_version):
            raise BrokerError(
                f"the Apache Kafka {self._requested_version} jars are not in {self.libs_dir}: "
                "run 'dicom-adapter broker fetch' (needs Maven) first"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        port = self._pick_port(self._requested_port, state.get("port"))
        cport = self._pick_port(self._requested_controller_port, state.get("controller_port"), port)
        self.controller_port = cport
        if self.secure:
            hosts = list(dict.fromkeys([self.host, "localhost", "127.0.0.1"]))
            self.security = SecureBroker.prepare(self.data_dir / "security", hosts)
        self.properties_path.write_text(self._render_properties(port, cport), encoding="utf-8")
        classpath = f"{self.libs_dir}/*"
        if not (self.log_dir / "meta.properties").is_file():
            self._format(java, classpath)
        self._save_state({"port": port, "controller_port": cport, "version": self.version})
        argv = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.properties_path),
        ]
        return port, argv

    def _after_ready(self, cluster: dict[str, Any]) -> None:
        log.info("Kafka cluster %s ready, data in %s", cluster.get("cluster_id"), self.log_dir)

    # -- helpers -----------------------------------------------------------------

    def _pick_port(self, requested: int | None, previous: Any, *taken: int) -> int:
        if requested:
            return requested
        reusable = isinstance(previous, int) and previous not in taken
        if reusable and port_is_free(previous, self.host):
            return int(previous)
        while True:
            port = free_port(self.host)
            if port not in taken:
                return port

    def _render_properties(self, port: int, cport: int) -> str:
        client = "SASL_SSL" if self.security is not None else "PLAINTEXT"
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@{self.host}:{cport}",
            "listeners": f"{client}://{self.host}:{port},CONTROLLER://{self.host}:{cport}",
            "advertised.listeners": f"{client}://{self.host}:{port}",
            "inter.broker.listener.name": client,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
        }
        if self.security is not None:
            props.update(self.security.properties(client))
        props.update(DEFAULT_PROPERTIES)
        props.update(self._properties)
        lines = ["# Written by dicom-adapter at every start; edits are overwritten."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = new_cluster_id()
        log.info("formatting Kafka storage in %s (cluster id %s)", self.log_dir, cluster_id)
        cmd = [
            java,
            "-Xmx256m",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_path),
            *(self.security.format_arguments() if self.security is not None else ()),
        ]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(
                f"formatting Kafka storage in {self.log_dir} took over {_FORMAT_TIMEOUT_S} s"
            ) from None
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise BrokerError(
                f"could not format Kafka storage in {self.log_dir} (exit {done.returncode}); "
                f"remove the folder if it is not needed. StorageTool said:\n{output}"
            )

    def _load_state(self) -> dict[str, Any]:
        path = self.data_dir / _STATE_FILE
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        path = self.data_dir / _STATE_FILE
        path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def _read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out
