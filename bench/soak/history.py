"""Writing the soak's history: instance files and their events, a batch at a time."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from streams.events import Envelope, InstanceReceived, RecordKeys, envelope
from streams.kafka import EventPublisher

AE = "SOAK"
PER_GROUP = 10
FILE_BYTES = 512
_CT = "1.2.840.10008.5.1.4.1.1.2"
_LE = "1.2.840.10008.1.2.1"
_ROOT = "1.2.826.0.1.3680043.10.1"


def _group(storage: Path, n: int, now_ms: int) -> Iterator[tuple[str, InstanceReceived]]:
    patient = f"SOAK-{n:08d}"
    study, series = f"{_ROOT}.{n}", f"{_ROOT}.{n}.1"
    folder = storage / AE / study / series
    folder.mkdir(parents=True, exist_ok=True)
    payload = b"S" * FILE_BYTES
    for i in range(PER_GROUP):
        sop = f"{series}.{i}"
        path = folder / f"{sop}.dcm"
        with open(path, "wb") as f:
            f.write(payload)
        yield patient, InstanceReceived(
            called_ae=AE, calling_ae="SOAKSCU", calling_host="127.0.0.1",
            association_id=str(uuid.uuid4()), sop_class_uid=_CT, sop_instance_uid=sop,
            transfer_syntax_uid=_LE, patient_id=patient, study_instance_uid=study,
            series_instance_uid=series, received_at=now_ms, uri=str(path), size=FILE_BYTES,
        )  # fmt: skip


async def write_history(
    bootstrap: str, topic: str, storage: Path, first_group: int, groups: int, *, batch: int = 500
) -> int:
    """Write ``groups`` groups (files, then their events, acks=all); returns the events."""
    keys = RecordKeys()
    written = 0
    async with EventPublisher(bootstrap, client_id="soak-history") as publisher:
        for start in range(first_group, first_group + groups, batch):
            now_ms = int(time.time() * 1000)
            items: list[tuple[str, Envelope]] = []
            for n in range(start, min(start + batch, first_group + groups)):
                for patient, event in _group(storage, n, now_ms):
                    items.append(
                        (keys(AE, patient), envelope(event, source="soak", time_ms=now_ms))
                    )
            await publisher.publish_many(topic, items)
            written += len(items)
    return written


def disk_used(folder: Path) -> tuple[int, int, int]:
    """``(bytes, folders, files)`` under ``folder``: bytes allocated to files and folders
    as ``du`` counts them (a folder keeps the blocks of the most entries it ever held on
    ext4), and how many of each are left."""
    total = folders = files = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        folders += len(dirnames)
        files += len(filenames)
        for name in (*dirnames, *filenames):
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total, folders, files
