"""The soak's roles: a ``process`` and a ``submit`` process, run to the end of the
history, then restarted cold to measure start-up and memory."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition

from streams.kafka import LogReader
from tests.helpers.cluster import NS, Cluster, Role, poll, rss_bytes, scrape
from tests.helpers.processor import poll_readyz
from tests.helpers.waiting import committed_offsets

CAUGHT_UP = "caught up, "


def write_config(path: Path, *, prefix: str, storage: Path, partitions: int, ae: str) -> Path:
    """One config for both roles (ports and ids come from the env, as compose runs them)."""
    storage.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "adapter_id: soak\n"
        f"storage: {storage}\n"
        f"kafka:\n  topic_prefix: {prefix}\n  partitions: {partitions}\n"
        "http:\n  host: 127.0.0.1\n  port: 0\n"
        "submitter:\n  kind: kafka\n  payload_retention_hours: 0\n"
        "scp:\n"
        "  ae_titles:\n"
        f"    - ae_title: {ae}\n"
        "      processorSettings:\n"
        "        groupBy: Study\n"
        "        timeout: 5\n"
        "        pipeline-soak: 8abf244aff7647989d4f6b3987a85759\n"
    )
    return path


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topic``."""
    async with LogReader(bootstrap, client_id="soak-ends") as reader:
        ends = await reader.end_offsets(topic)
    return {TopicPartition(topic, p): end for p, end in ends.items()}


@dataclass(frozen=True)
class Startup:
    """One cold start of both roles."""

    process_ready_s: float
    submit_ready_s: float
    submit_history_s: float  # spawn -> every jobs partition caught up (both followers)
    history_records: int  # records the submit role read before acting
    process_rss: int
    submit_rss: int


class SoakRoles:
    """Start, drain, stop and measure the two roles; see the module docstring."""

    def __init__(self, bootstrap: str, config: Path, work: Path, prefix: str, ae: str) -> None:
        self.bootstrap = bootstrap
        self.cluster = Cluster(bootstrap, config, work)
        self.prefix = prefix
        self.ae = ae
        self.roles: dict[str, Role] = {}
        self.partitions = 0

    async def start(self) -> tuple[float, float]:
        """Start both roles; returns seconds to ``/readyz`` 200 of process and submit."""
        spawned = time.monotonic()
        self.roles = {
            "process": await self.cluster.start("process", f"process-{time.time_ns()}"),
            "submit": await self.cluster.start("submit", f"submit-{time.time_ns()}"),
        }

        def up(status: int, body: dict[str, object]) -> bool:
            self.cluster.alive()
            return status == 200

        async def ready(role: Role) -> float:  # each role's own time, polled side by side
            await poll_readyz(role.url, up)
            return time.monotonic() - spawned

        process_s, submit_s = await asyncio.gather(
            ready(self.roles["process"]), ready(self.roles["submit"])
        )
        return process_s, submit_s

    async def drain(self, deadline_s: float) -> None:
        """Wait until every instance is grouped, every job submitted and reclaimed:
        nothing open, every consumer group committed to the end of its topic."""
        groups = {
            f"{self.prefix}.instances": [f"{self.prefix}.processors.{self.ae}"],
            f"{self.prefix}.jobs": [f"{self.prefix}.submitter", f"{self.prefix}.reclaimer"],
        }
        stable: list[dict[str, int]] = []

        async def done() -> bool:
            self.cluster.alive()
            metrics = await scrape(self.roles["process"].url)
            if metrics.get(f"{NS}open_groups", -1.0) != 0.0:
                return False
            seen: dict[str, int] = {}
            for topic, members in groups.items():
                ends = await end_offsets(self.bootstrap, topic)
                for group in members:
                    committed = await committed_offsets(self.bootstrap, group)
                    if any(committed.get(tp, -1) < end for tp, end in ends.items()):
                        return False
                    seen[group] = sum(ends.values())
            stable.append(seen)
            return len(stable) >= 3 and stable[-1] == stable[-3]  # no new ledger records

        await poll("the history is processed", done, deadline_s)

    def history_read(self) -> tuple[int, int]:
        """``(partitions caught up, records read)`` from the submit role's log."""
        count = records = 0
        for line in self.roles["submit"].log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = str(entry.get("message", ""))
            if CAUGHT_UP in message and ".jobs:" in message:
                count += 1
                records += int(message.split(CAUGHT_UP, 1)[1].split(maxsplit=1)[0])
        return count, records

    async def cold_start(self, partitions: int) -> Startup:
        """Restart both roles and measure them (the history is already processed)."""
        spawned = time.monotonic()
        process_s, submit_s = await self.start()

        async def read_all() -> bool:
            self.cluster.alive()
            return self.history_read()[0] >= 2 * partitions  # submitter and reclaimer

        await poll("the submit role read its history", read_all, timeout_s=600)
        history_s = time.monotonic() - spawned
        await self.drain(600)
        await asyncio.sleep(1.0)  # settle: the figures are of an idle, caught-up role
        startup = Startup(
            process_ready_s=process_s,
            submit_ready_s=submit_s,
            submit_history_s=history_s,
            history_records=self.history_read()[1],
            process_rss=rss_bytes(self.roles["process"].proc.pid),
            submit_rss=rss_bytes(self.roles["submit"].proc.pid),
        )
        await self.stop()
        return startup

    async def stop(self) -> None:
        """SIGTERM both roles; a role that does not stop cleanly fails the bench."""
        codes = await self.cluster.terminate()
        bad = {name: code for name, code in codes.items() if code != 0}
        assert not bad, f"roles did not stop cleanly: {bad}"
        self.cluster.roles.clear()
