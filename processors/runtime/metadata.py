"""The commit metadata of an instances partition: where its jobs ledger starts (pure).

Stored with every commit of ``<prefix>.instances`` partition ``p`` (DESIGN.md §4): for
each jobs-topic partition, the offset from which a new owner of ``p`` must read the
ledger to find every ``group.closed`` whose inputs on ``p`` are at or after the
committed offset. JSON, small (Kafka keeps up to 4 KB)::

    {"v": 1, "ledger": {"3": 1234}}

With as many jobs partitions as instances partitions the runtime writes a partition's
records to the jobs partition of the same number, so the map holds one entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson

log = logging.getLogger(__name__)

METADATA_VERSION = 1


def encode_positions(positions: Mapping[int, int]) -> str:
    """The metadata string for ``{jobs partition: offset}``."""
    ledger = {str(p): int(o) for p, o in sorted(positions.items())}
    return orjson.dumps({"v": METADATA_VERSION, "ledger": ledger}).decode()


def decode_positions(text: str | None) -> dict[int, int] | None:
    """``{jobs partition: offset}`` from a metadata string; ``None`` when there is none
    or it is not ours (then the whole ledger must be read: always safe)."""
    if not text:
        return None
    try:
        data = orjson.loads(text)
        ledger = data["ledger"] if data.get("v") == METADATA_VERSION else None
        if not isinstance(ledger, dict):
            raise ValueError("no ledger map")
        out = {int(p): int(o) for p, o in ledger.items()}
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring commit metadata %r (%s); reading the jobs ledger from its start",
                    text[:80], exc)  # fmt: skip
        return None
    if any(p < 0 or o < 0 for p, o in out.items()):
        log.warning("ignoring commit metadata %r (negative position)", text[:80])
        return None
    return out
