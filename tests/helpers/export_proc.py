"""An exporter process for crash tests: ``python -m tests.helpers.export_proc JOURNAL CONFIG``.

It stands in for the export role until that is wired to Kafka: the durable log is a
journal file (one ``<key>\\t<event JSON>`` line per event, flushed and fsync'ed before
``publish`` returns, like an acks=all write). On start it folds the journal, then runs
every due attempt with :class:`processors.export.ExportWorker` until no export is open,
and exits 0. ``CONFIG`` is an adapter config (JSON) with an ``export`` section;
``EXPORT_PUBLISH_DELAY_S`` makes each publish slow (a slow broker), so a test can kill
the process between a peer's answer and the event that records it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from processors.export import ExportWorker, due, fold, make_senders, next_due_at, retry_policy
from streams.config import AdapterConfig
from streams.events import Envelope, decode, encode

TOPIC = "test.exports"


def read_journal(path: Path) -> list[tuple[str, Envelope]]:
    """Every complete line of the journal, in order (a torn last line is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        key, sep, wire = line.partition(b"\t")
        if sep:
            try:
                out.append((key.decode(), decode(wire)))
            except ValueError:
                continue
    return out


def append_journal(path: Path, key: str, env: Envelope) -> None:
    """Append one event durably (write, flush, fsync)."""
    with path.open("ab") as f:
        f.write(key.encode() + b"\t" + encode(env) + b"\n")
        f.flush()
        os.fsync(f.fileno())


async def main(journal: Path, config: AdapterConfig) -> int:
    """Fold the journal, then attempt every due export until none is open."""
    delay = float(os.environ.get("EXPORT_PUBLISH_DELAY_S", "0"))
    ledger = fold(read_journal(journal))

    async def publish(topic: str, key: str, env: Envelope) -> None:
        if delay:
            await asyncio.sleep(delay)
        append_journal(journal, key, env)

    worker = ExportWorker(
        ledger=ledger,
        senders=make_senders(config),
        publish=publish,
        topic=TOPIC,
        source="export-proc",
        policy=retry_policy(config),
        batch_size=config.export.batch_size,
    )
    while True:
        now_ms = int(time.time() * 1000)
        for state in due(ledger, now_ms):
            await worker.attempt(state.request_id, state.destination)
        next_at = next_due_at(ledger)
        if next_at is None:
            return 0
        await asyncio.sleep(max(0.0, next_at / 1000 - time.time()))


if __name__ == "__main__":
    settings = AdapterConfig.model_validate_json(Path(sys.argv[2]).read_text())
    sys.exit(asyncio.run(main(Path(sys.argv[1]), settings)))
