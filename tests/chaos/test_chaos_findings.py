"""Regression tests for what the chaos runs found, each named after its finding."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from streams.broker import KafkaBroker
from tests.helpers.cluster import Cluster
from tests.helpers.processor import poll_readyz, write_config

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.slow]

#: Longer than the broker's session timeout (9 s): on SIGCONT the KRaft controller first
#: fences its own broker, and metadata answers name no controller for a moment.
PAUSE_S = 12


@pytest.mark.parametrize("role_name", ["submit", "process"])
async def test_a_role_started_while_the_broker_is_paused_waits_instead_of_crashing(
    role_name: str, chaos_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Chaos seed 1005: the submitter, restarted while the broker was paused, crashed on
    SIGCONT with an AttributeError from aiokafka's create_topics (no controller known).
    The processor is held to the same (its own finding, seed 1009, has a deterministic
    test in tests/integration/test_process_edges.py)."""
    assert chaos_broker.pid is not None
    config = write_config(
        tmp_path / "adapter.yaml",
        prefix=f"finding-{role_name}-{os.getpid()}",
        storage=tmp_path / "s",
    )
    cluster = Cluster(chaos_broker.bootstrap_servers, config, tmp_path)
    os.kill(chaos_broker.pid, signal.SIGSTOP)
    try:
        role = await cluster.start(role_name, role_name)
        await asyncio.sleep(PAUSE_S)  # the fault: the broker stays paused this long
    finally:
        os.kill(chaos_broker.pid, signal.SIGCONT)
    try:
        status, body = await poll_readyz(role.url, lambda s, b: s == 200 or not role.running)
        role.alive()
        assert status == 200, body
    finally:
        await cluster.kill_all()
    assert "Traceback" not in role.log.read_text(), role.log.read_text()[-3000:]
