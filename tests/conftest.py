"""Session fixtures: a real Kafka broker and unique names per test.

``kafka_bootstrap`` is ``$KAFKA_BOOTSTRAP_SERVERS`` when set (an external broker), else
an Apache Kafka broker (KRaft) that this session starts from the Maven jars (fetched
first if missing) on a free loopback port and stops at the end. If Kafka cannot be
started, every test that needs it fails with the reason — it is never skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from streams.broker import KafkaBroker, fetch_kafka_jars
from streams.broker.secure import SecureBroker
from streams.errors import BrokerError

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"

# Property tests check results, not speed: a shared CI machine must not fail them on
# a slow example (speed is measured in bench/, never in tests).
settings.register_profile("adapter", deadline=None)
settings.load_profile("adapter")

_broker_lines: list[str] = []


def _announce(config: pytest.Config, line: str) -> None:
    """Show which broker the Kafka tests use, once, now and in the final summary."""
    if line in _broker_lines:
        return
    _broker_lines.append(line)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the broker line at the end of the run (CI output shows what ran)."""
    for line in _broker_lines:
        terminalreporter.write_sep("-", "kafka broker")
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The cached Apache Kafka jars (fetched with Maven if missing); fails if impossible."""
    try:
        return fetch_kafka_jars()
    except BrokerError as exc:
        pytest.fail(f"Kafka tests need the Apache Kafka jars: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``host:port`` of a real Kafka broker for the whole session."""
    external = os.environ.get(KAFKA_ENV)
    if external:
        _announce(request.config, f"Kafka broker: external at {external} (from ${KAFKA_ENV})")
        yield external
        return
    libs: Path = request.getfixturevalue("kafka_jars")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), libs_dir=libs)
    try:
        broker.__enter__()
    except BrokerError as exc:
        pytest.fail(f"could not start Apache Kafka for the tests: {exc}", pytrace=False)
    _announce(
        request.config,
        f"Kafka broker: {broker.description} at {broker.bootstrap_servers} "
        "(started by the test session from Maven jars)",
    )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.__exit__(None, None, None)


@pytest.fixture(scope="session")
def secure_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, SecureBroker]]:
    """``(bootstrap, security)`` of a second, secure broker (SASL_SSL + SCRAM-SHA-512,
    ACLs enforced; streams/broker/secure.py) started for the tests marked ``secure``."""
    libs: Path = request.getfixturevalue("kafka_jars")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-secure"), libs_dir=libs, secure=True)
    try:
        broker.__enter__()
    except BrokerError as exc:
        pytest.fail(f"could not start the secure Apache Kafka broker: {exc}", pytrace=False)
    assert broker.security is not None
    _announce(
        request.config, f"Secure Kafka broker: {broker.description} at {broker.bootstrap_servers}"
    )
    try:
        yield broker.bootstrap_servers, broker.security
    finally:
        broker.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo the CLI's logging set-up after in-process ``main()`` calls.

    ``main`` installs a handler on the stream that is ``sys.stderr`` at that moment
    (pytest's capture); left behind, it would write to a closed stream later.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of Kafka-safe names unique to this test: ``unique_name("topic")``."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]

    def make(kind: str = "t") -> str:
        return f"{kind}-{base}-{uuid.uuid4().hex[:10]}"

    return make
