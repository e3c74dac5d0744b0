"""The load: DCMTK ``storescu``, one process per parallel association.

With ``parallel`` > 1 each process gets a contiguous share of the file list (so a
series mostly stays on one association, as from a modality) and all start together.
The clock runs from the first start to the last exit.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.ingest.receivers import CALLED_AE

STORESCU = "/usr/bin/storescu"


@dataclass(frozen=True, slots=True)
class SendResult:
    """Wall time of the send and each storescu's exit code and last output lines."""

    seconds: float
    returncodes: tuple[int, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Every storescu exited 0."""
        return all(rc == 0 for rc in self.returncodes)


def split(files: Sequence[Path], parts: int) -> list[list[Path]]:
    """``files`` in ``parts`` contiguous shares of near-equal size."""
    n = len(files)
    bounds = [n * i // parts for i in range(parts + 1)]
    return [list(files[bounds[i] : bounds[i + 1]]) for i in range(parts)]


def storescu_env(nodelay: bool) -> dict[str, str]:
    """The sender environment: ``TCP_NODELAY=1`` (DCMTK reads it) or unset."""
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def send(
    files: Sequence[Path], port: int, *, parallel: int, nodelay: bool, timeout_s: float = 600
) -> SendResult:
    """Send ``files`` to ``127.0.0.1:port`` over ``parallel`` associations."""
    env = storescu_env(nodelay)
    procs = []
    start = time.perf_counter()
    for share in split(files, parallel):
        argv = [STORESCU, "-aet", "BENCHSCU", "-aec", CALLED_AE, "127.0.0.1", str(port)]
        procs.append(
            subprocess.Popen(
                [*argv, *map(str, share)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
            )
        )
    errors = []
    codes = []
    deadline = start + timeout_s
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        codes.append(proc.returncode)
        errors.append("\n".join(err.decode(errors="replace").splitlines()[-3:]))
    seconds = time.perf_counter() - start
    return SendResult(seconds, tuple(codes), tuple(errors))
