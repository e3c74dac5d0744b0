"""Bad input at the SCP port: a seeded fuzz of raw TCP, malformed PDUs and abrupt closes.

Issue 8 ("bad input"): whatever arrives at the port, the SCP answers with a proper
status, rejection or abort, never crashes, leaks no association thread, keeps no file
for a C-STORE it did not answer Success, and keeps serving. The fuzz aims at the hand-
written fast receive path (streams/scp/fastpath.py, wire.py) as much as at pynetdicom.

``FUZZ_CASES`` (default 2500, about 80 s on 2 cores; 10000 took 5 min) sets the
number of cases and ``FUZZ_SEED`` the seed; every batch of cases is followed by the
invariant checks. What it found is fixed, each with a test in test_scp_fuzz_findings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import scu
from helpers.dicom import make_ct
from helpers.kafka import read_events
from helpers.portfuzz import AE, Case
from helpers.scp import scp_config
from helpers.waiting import wait_for
from pydicom.filereader import read_file_meta_info
from pydicom.multival import MultiValue

from streams.scp import ScpService

pytestmark = [pytest.mark.kafka, pytest.mark.dicom]

FUZZ_CASES = int(os.environ.get("FUZZ_CASES", "2500"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261128"))
BATCH = 500
#: Threads allowed above the baseline once every fuzz connection is closed.
THREAD_SLACK = 1
#: ``scp.acse_timeout_s`` of the fuzzed SCP (see the fuzz test).
ACSE_TIMEOUT_S = 2
#: The fuzz test's own time limit (about 35 cases a second on 2 cores, plus start-up).
FUZZ_TIMEOUT_S = max(240, FUZZ_CASES // 8)
#: Log messages that mean a server loop or handler crashed (not a refused input).
CRASH_MARKERS = (
    "Exception in DUL.run()",
    "Exception in the handler",
    "failed unexpectedly",
    "Invalid event",
    "DUL reactor failed",
    "State Machine received an exception",
)


# -- invariants ---------------------------------------------------------------------


def _stored_sops(storage: Path) -> Iterator[tuple[Path, str]]:
    for path in (storage / AE).rglob("*") if (storage / AE).exists() else ():
        if path.is_file() and ".outbox" not in path.parts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fuzzed data sets are odd by design
                value = read_file_meta_info(path).MediaStorageSOPInstanceUID
                sop = "\\".join(value) if isinstance(value, MultiValue) else str(value)
            yield path, _ascii(sop)


def _ascii(uid: str) -> str:
    """A UID as both sides can compare it (byte flips make non-ASCII characters)."""
    return uid.encode("ascii", "replace").decode("ascii")


def _threads() -> list[threading.Thread]:
    """Threads other than the test's own workers (executors, asyncio.to_thread)."""
    mine = ("ThreadPoolExecutor", "asyncio_")
    return [t for t in threading.enumerate() if not t.name.startswith(mine)]


def _server_threads() -> int:
    return len(_threads())


class CrashWatch(logging.Handler):
    """Keeps the log records that mean a crash, and counts the rest by level.

    Installed instead of pytest's capture for the SCP's loggers: a 10k-case run logs
    hundreds of thousands of refused inputs, which pytest would keep in memory.
    """

    LOGGERS = ("pynetdicom", "pydicom", "streams")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.crashes: list[str] = []
        self.levels: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        try:
            message = record.getMessage()
        except Exception:  # a fuzzed value can break a log call's formatting
            message = str(record.msg)
        crashed = any(m in message for m in CRASH_MARKERS) or (
            record.exc_info is not None and record.name.startswith("streams")
        )
        if record.levelno >= logging.ERROR and crashed:
            self.crashes.append(message)

    @contextlib.contextmanager
    def installed(self) -> Iterator[CrashWatch]:
        loggers = [logging.getLogger(name) for name in self.LOGGERS]
        saved = [(lg.propagate, lg.level) for lg in loggers]
        for lg in loggers:
            lg.addHandler(self)
            lg.propagate = False
            lg.setLevel(logging.WARNING)
        try:
            yield self
        finally:
            for lg, (propagate, level) in zip(loggers, saved, strict=True):
                lg.removeHandler(self)
                lg.propagate = propagate
                lg.setLevel(level)


def _probe_store(port: int) -> str:
    ds = make_ct(patient_id="PROBE")
    result, statuses = scu.store(port, [ds], aec=AE)
    assert result.established and statuses == [0x0000], (result, statuses)
    return str(ds.SOPInstanceUID)


@pytest.mark.slow
@pytest.mark.timeout(FUZZ_TIMEOUT_S)
async def test_seeded_fuzz_of_the_scp_port_never_breaks_it(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    with CrashWatch().installed() as watch:
        await _fuzz(tmp_path, kafka_bootstrap, unique_name, watch)


async def _fuzz(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str], watch: CrashWatch
) -> None:
    prefix = unique_name("scp")
    storage = tmp_path / "storage"
    # A short ACSE timeout, so a connection that stalls before or after its
    # association (a truncated PDU whose sender is gone, say) is closed within a
    # batch; batches wait for every slot to be free again.
    config = scp_config(
        storage, kafka_bootstrap, prefix, max_associations=200, acse_timeout_s=ACSE_TIMEOUT_S
    )
    kinds: Counter[str] = Counter()
    endings: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    statuses: Counter[str] = Counter()
    answered_success: set[str] = set()
    stored: set[str] = set()
    probes: list[str] = []
    async with ScpService(config) as scp:
        port = scp.port
        probes.append(await asyncio.to_thread(_probe_store, port))
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        baseline = _server_threads()
        rng = random.Random(FUZZ_SEED)
        started = time.monotonic()
        done = 0
        with ThreadPoolExecutor(4) as pool:
            while done < FUZZ_CASES:
                n = min(BATCH, FUZZ_CASES - done)
                seeds = [rng.randrange(2**63) for _ in range(n)]
                outcomes = await asyncio.to_thread(
                    lambda s=seeds: list(pool.map(lambda seed: Case(port, seed).play(), s))
                )
                done += n
                print(f"fuzz: {done} cases played, {time.monotonic() - started:.0f} s", flush=True)
                for o in outcomes:
                    kinds[o.kind] += 1
                    endings[o.ended] += 1
                    by_kind.setdefault(o.kind, Counter())[o.ended] += 1
                    statuses.update(f"{code:#06x}" for code in o.statuses)
                    answered_success.update(_ascii(u) for u in o.successes)
                # No association or thread outlives its connection.
                await asyncio.to_thread(
                    wait_for, lambda: not scp.server.associations(), "associations to end"
                )
                await asyncio.to_thread(
                    wait_for,
                    lambda: _server_threads() <= baseline + THREAD_SLACK,
                    f"threads back near {baseline} (after {done} cases): "
                    f"{sorted(t.name for t in _threads())}",
                )
                # The SCP still serves: C-ECHO and a C-STORE that stores and publishes.
                result, status = await asyncio.to_thread(scu.echo, port, aec=AE)
                assert result.established and status == 0, f"after {done} cases: {result}"
                probes.append(await asyncio.to_thread(_probe_store, port))
                assert not watch.crashes, watch.crashes
                # A Success seen on the wire has its file (the rest is checked below).
                stored = {sop for _, sop in _stored_sops(storage)}
                missing = answered_success - stored
                assert not missing, f"answered Success but not stored: {sorted(missing)}"
        # ``stored`` holds the probes' files too: one event each, at least.
        events = await read_events(
            kafka_bootstrap, f"{prefix}.instances", at_least=len(stored | set(probes))
        )
    published = {_ascii(env.data.sop_instance_uid) for _, env in events}
    assert set(probes) <= published
    # Every file left in storage is a C-STORE the SCP answered Success (stored and
    # published); none is left from a failed, truncated or aborted one. (The wire can
    # lose a Success the SCP sent when the fuzz case's connection is reset.)
    assert stored <= published, f"files never answered Success: {sorted(stored - published)}"
    print(f"\nfuzz: {done} cases, seed {FUZZ_SEED}, crashes 0; endings {dict(endings)}")
    print(f"fuzz: SCP log lines by level {dict(watch.levels)}")
    print(f"fuzz: C-STORE statuses seen {dict(statuses)}")
    for kind in sorted(by_kind):
        print(f"fuzz: {kind:20} {kinds[kind]:5}  {dict(by_kind[kind])}")
    assert kinds["valid_store"] and answered_success  # the harness itself can store


async def test_association_flood_past_max_associations_is_rejected_then_serves(
    tmp_path: Path, kafka_bootstrap: str, unique_name
) -> None:
    config = scp_config(
        tmp_path / "storage", kafka_bootstrap, unique_name("scp"), max_associations=3
    )
    async with ScpService(config) as scp:
        barrier = threading.Barrier(10)

        def attempt() -> tuple[object, scu.AssocResult]:
            barrier.wait(timeout=10)
            _, assoc, result = scu.associate(scp.port, aec=AE)
            return assoc, result

        with ThreadPoolExecutor(10) as pool:
            attempts = await asyncio.to_thread(
                lambda: list(pool.map(lambda _: attempt(), range(10)))
            )
        established = [a for a, r in attempts if r.established]
        rejected = [r for _, r in attempts if r.rejected]
        assert len(established) <= 3 and len(established) + len(rejected) == 10
        assert len(rejected) >= 7
        for r in rejected:
            assert (r.result, r.source, r.diagnostic) == (0x02, 0x03, 0x02)
            assert "Local limit exceeded" in r.reason
        for assoc in established:
            await asyncio.to_thread(assoc.release)  # type: ignore[attr-defined]
        await asyncio.to_thread(wait_for, lambda: not scp.server.associations(), "idle SCP")
        result, status = await asyncio.to_thread(scu.echo, scp.port, aec=AE)
        assert result.established and status == 0
        await asyncio.to_thread(_probe_store, scp.port)
