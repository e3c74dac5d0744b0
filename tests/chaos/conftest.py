"""Chaos suite fixtures: a broker of its own (the runs SIGSTOP it) and the seeds to run.

``CHAOS_RUNS`` (default 3) seeded runs, seeds ``CHAOS_SEED_BASE`` (default 1000) onward;
``CHAOS_SEEDS=7,12`` runs exactly those. ``CHAOS_MAX_PAUSE_S`` (default 30) bounds the
broker pause. ``CHAOS_REPORT=FILE`` appends one JSON line per run (docs/reliability.md).

The broker is always started by this suite from the Maven jars, even when
``KAFKA_BOOTSTRAP_SERVERS`` names an external one: pausing it is one of the faults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import KafkaBroker
from streams.errors import BrokerError


def chaos_seeds() -> list[int]:
    """The seeds this session runs (see the module docstring)."""
    chosen = os.environ.get("CHAOS_SEEDS", "").strip()
    if chosen:
        return [int(s) for s in chosen.split(",") if s.strip()]
    base = int(os.environ.get("CHAOS_SEED_BASE", "1000"))
    return list(range(base, base + int(os.environ.get("CHAOS_RUNS", "3"))))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        metafunc.parametrize("chaos_seed", chaos_seeds())


@pytest.fixture(scope="session")
def chaos_broker(
    kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    """An Apache Kafka broker (KRaft) for the chaos runs alone."""
    broker = KafkaBroker(tmp_path_factory.mktemp("chaos-kafka"), libs_dir=kafka_jars)
    try:
        broker.__enter__()
    except BrokerError as exc:
        pytest.fail(f"could not start Apache Kafka for the chaos suite: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.__exit__(None, None, None)
