"""Ready-made readiness checks that several roles share."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path


def storage_writable(root: Path) -> Callable[[], Awaitable[bool]]:
    """A check that creates, fsyncs and deletes a small file directly under ``root``.

    Catches a read-only or full volume and a missing mount, which is what the SCP and the
    submitter need before they say they are ready. The file work runs in a thread so a
    slow disk never blocks the event loop; the file name is unique per call.
    """

    async def check() -> bool:
        await asyncio.to_thread(_probe, root)
        return True

    return check


def _probe(root: Path) -> None:
    if not root.is_dir():
        raise NotADirectoryError(f"storage {root} is not a directory (is the volume mounted?)")
    probe = root / f".ready-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        with probe.open("xb") as handle:
            try:
                handle.write(b"ready\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                probe.unlink()
    except OSError as exc:
        raise OSError(f"storage {root} is not writable: {exc.strerror or exc}") from None
