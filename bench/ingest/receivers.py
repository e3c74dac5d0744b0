"""Receivers under test: a common subprocess shell plus DCMTK and pynetdicom's app.

Every receiver is started fresh for each run, on its own port, with an empty output
folder under the run's work directory; readiness is a real C-ECHO (DCMTK ``echoscu``),
and after the send :meth:`Receiver.verify` counts what was stored.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest.corpus import Corpus

ECHOSCU = "/usr/bin/echoscu"
STORESCP = "/usr/bin/storescp"
CALLED_AE = "BENCH"


@dataclass
class Verification:
    """What a receiver holds after a run: stored instances, events, problems found."""

    stored: int
    events: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or extra."""
        return not self.problems


class ReceiverError(RuntimeError):
    """A receiver did not start or died."""


class Receiver(abc.ABC):
    """One receiver process (tree) serving C-STORE on ``127.0.0.1:port``.

    ``nodelay`` sets ``TCP_NODELAY=1`` in the receiver's environment (read by DCMTK and
    therefore Orthanc); ``workdir`` is empty and owned by this run.
    """

    #: Short name used on the command line and in result files.
    name: str = ""
    #: Row label in the tables.
    label: str = ""

    def __init__(self, workdir: Path, port: int, *, nodelay: bool) -> None:
        self.workdir = workdir
        self.port = port
        self.nodelay = nodelay
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"{self.name}.log"

    @abc.abstractmethod
    def command(self) -> list[str]:
        """argv of the receiver."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Write config files and folders before :meth:`command` runs."""

    @abc.abstractmethod
    def verify(self, corpus: Corpus) -> Verification:
        """Count what was stored (and published) after a send of ``corpus``."""

    def environment(self) -> dict[str, str]:
        """The receiver's environment."""
        env = dict(os.environ)
        env.pop("TCP_NODELAY", None)
        if self.nodelay:
            env["TCP_NODELAY"] = "1"
        return env

    @property
    def pid(self) -> int:
        """Root pid of the receiver's process tree."""
        if self.proc is None:
            raise ReceiverError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout_s: float = 90.0) -> None:
        """Spawn and wait until a C-ECHO succeeds."""
        self.prepare()
        with open(self._log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ReceiverError(
                    f"{self.name} exited with {self.proc.returncode}: {self.tail()}"
                )
            if echo(self.port):
                return
            time.sleep(0.1)  # readiness poll, not a measurement
        self.stop()
        raise ReceiverError(f"{self.name} not ready after {timeout_s:g} s: {self.tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout_s``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def tail(self, lines: int = 15) -> str:
        """The end of the receiver's log."""
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def settle(self, corpus: Corpus, timeout_s: float = 30.0) -> Verification:
        """Poll :meth:`verify` until complete or ``timeout_s`` (writes may lag the ack)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.verify(corpus)
            if result.ok or time.monotonic() > deadline:
                return result
            time.sleep(0.2)


def echo(port: int) -> bool:
    """One C-ECHO to ``127.0.0.1:port``; True on success."""
    try:
        done = subprocess.run(
            [ECHOSCU, "-aec", CALLED_AE, "-to", "5", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def count_files(directory: Path, pattern: str) -> int:
    """Files matching ``pattern`` anywhere under ``directory``."""
    return sum(1 for p in directory.rglob(pattern) if p.is_file())


def expect(count: int, wanted: int, what: str) -> list[str]:
    """A one-item problem list when ``count != wanted``."""
    return [] if count == wanted else [f"{what}: {count} of {wanted}"]


class DcmtkStorescp(Receiver):
    """``storescp --fork -dhl -od DIR`` (one forked child per association)."""

    name = "dcmtk"
    label = "DCMTK storescp --fork"

    def command(self) -> list[str]:
        out = self.workdir / "out"
        out.mkdir(exist_ok=True)
        # +xa: accept every transfer syntax (compressed too), -pm: unknown SOP classes.
        return [STORESCP, "--fork", "-dhl", "+xa", "-pm", "-od", str(out), str(self.port)]

    def verify(self, corpus: Corpus) -> Verification:
        n = count_files(self.workdir / "out", "CT.*")
        return Verification(n, problems=expect(n, len(corpus.files), "files"))


class PynetdicomApp(Receiver):
    """pynetdicom's bundled ``storescp`` app, with TCP_NODELAY (see :mod:`.pyn_app`)."""

    name = "pyn-app"
    label = "pynetdicom storescp app"

    def command(self) -> list[str]:
        out = self.workdir / "out"
        out.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "bench.ingest.pyn_app"]
        if not self.nodelay:
            argv.append("--as-shipped")
        return [*argv, str(self.port), "-od", str(out), "-ba", "127.0.0.1", "-aet", CALLED_AE]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        return env

    def verify(self, corpus: Corpus) -> Verification:
        n = count_files(self.workdir / "out", "CT.*")
        return Verification(n, problems=expect(n, len(corpus.files), "files"))
