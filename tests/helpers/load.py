"""Load rounds (issue 8), the pure and per-process parts: what one round sends, how the
DCMTK senders are run and read, and what ``/proc`` says about a role process.

A round is ``associations`` concurrent DCMTK ``storescu`` processes, each one study of
one patient (``series`` series, ``instances`` instances in all), with fresh UIDs every
round. Files are written from one pydicom-made template per round by replacing
fixed-length placeholder UIDs (pydicom writing 10,000 files takes ~18 s on two cores;
the template takes well under one), so every file is the same valid CT instance with
its own patient, study, series and SOP Instance UID.

Used by ``tests/load/`` and ``bench/load``; :mod:`tests.helpers.loadrun` drives rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.dicom import dcmtk, make_ct

#: pydicom's UID root (as ``generate_uid``); a load UID is root + "1" + 36 digits.
_ROOT = "1.2.826.0.1.3680043.8.498."
_UID_LEN = len(_ROOT) + 37  # 63: fixed, so placeholders can be replaced in place
_PLACE = {kind: f"{_ROOT}9{n:036d}" for n, kind in enumerate(("sop", "study", "series"), 1)}
_PATIENT_PLACE = "LOADPAT-XXXX"
SUCCESS = "Success"
_TICKS = os.sysconf("SC_CLK_TCK")


def load_uid() -> str:
    """A fresh 63-character UID (never equal to another, never a placeholder)."""
    return f"{_ROOT}1{uuid.uuid4().int % 10**36:036d}"


def patient_id(n: int) -> str:
    """The Patient ID of load patient ``n`` (same length as the template's)."""
    return f"LOADPAT-{n:04d}"


@dataclass(frozen=True)
class Shape:
    """The size of a load run: ``rounds`` x ``associations`` x ``instances``.

    Each association is one study of ``series`` series; ``patients`` patients share
    the studies of a round (a patient may have several studies at once).
    """

    rounds: int = 3
    associations: int = 25
    instances: int = 400
    series: int = 4
    patients: int = 10

    @property
    def per_round(self) -> int:
        """Instances sent per round."""
        return self.associations * self.instances


@dataclass(frozen=True)
class Planned:
    """One association of a round: a study of one patient, and its files."""

    index: int
    patient_id: str
    study_uid: str
    series_uids: tuple[str, ...]
    sops: tuple[str, ...]
    files: tuple[Path, ...]


def _template() -> bytes:
    ds = make_ct(
        patient_id=_PATIENT_PLACE,
        study_uid=_PLACE["study"],
        series_uid=_PLACE["series"],
        sop_uid=_PLACE["sop"],
    )
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def write_round(folder: Path, shape: Shape, first_patient: int = 0) -> list[Planned]:
    """Write one round's files under ``folder`` (one sub-folder per association)."""
    template = _template()
    places = {k: v.encode() for k, v in _PLACE.items()}
    planned: list[Planned] = []
    for index in range(shape.associations):
        patient = patient_id(first_patient + index % shape.patients)
        study = load_uid()
        series = tuple(load_uid() for _ in range(shape.series))
        base = template.replace(_PATIENT_PLACE.encode(), patient.encode())
        base = base.replace(places["study"], study.encode())
        directory = folder / f"a{index:02d}"
        directory.mkdir(parents=True)
        sops: list[str] = []
        files: list[Path] = []
        for n in range(shape.instances):
            series_uid = series[n * shape.series // shape.instances]
            sop = load_uid()
            data = base.replace(places["series"], series_uid.encode())
            path = directory / f"{sop}.dcm"
            path.write_bytes(data.replace(places["sop"], sop.encode()))
            sops.append(sop)
            files.append(path)
        planned.append(Planned(index, patient, study, series, tuple(sops), tuple(files)))
    return planned


# -- the senders ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What one ``storescu`` association reported: exit code and a status per SOP."""

    index: int
    returncode: int
    statuses: dict[str, str]  # SOP Instance UID -> C-STORE response status text
    seconds: float
    tail: str

    def failures(self, sops: Sequence[str]) -> dict[str, str]:
        """SOPs of ``sops`` not answered Success (``"no response"`` if none was seen)."""
        return {
            sop: self.statuses.get(sop, "no response")
            for sop in sops
            if self.statuses.get(sop) != SUCCESS
        }


def store_statuses(output: str) -> dict[str, str]:
    """Per-file C-STORE outcome from ``storescu -v`` output: ``{file stem: status}``.

    storescu logs ``Sending file: PATH`` before each request and ``Received Store
    Response (STATUS)`` after it (DCMTK 3.6).
    """
    out: dict[str, str] = {}
    current: str | None = None
    for line in output.splitlines():
        if "Sending file: " in line:
            current = Path(line.split("Sending file: ", 1)[1].strip()).stem
        elif "Received Store Response" in line and current is not None:
            start, end = line.find("("), line.rfind(")")
            out[current] = line[start + 1 : end] if 0 <= start < end else line.strip()
            current = None
    return out


async def send_association(port: int, planned: Planned, *, aec: str) -> Sent:
    """Send one association's files with DCMTK ``storescu -v`` (``TCP_NODELAY=1``)."""
    binary = dcmtk("storescu")
    assert binary is not None, "DCMTK storescu not found (apt-get install -y dcmtk)"
    args = ["-v", "-aec", aec, "-aet", f"LOADSCU{planned.index:02d}", "127.0.0.1", str(port)]
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        binary, *args, *map(str, planned.files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
    )  # fmt: skip
    raw, _ = await proc.communicate()
    output = raw.decode("utf-8", "replace")
    code = proc.returncode if proc.returncode is not None else -1
    return Sent(
        planned.index, code, store_statuses(output), time.monotonic() - start, output[-800:]
    )


# -- /proc -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStats:
    """Resident memory, open file descriptors and threads of one process.

    ``fd_kinds`` names each open descriptor (``socket``, ``pipe``, ``anon_inode:...``
    or the file's path), for messages when the count changes.
    """

    rss: int
    fds: int
    threads: int
    fd_kinds: tuple[str, ...] = ()
    cpu_s: float = 0.0  # user + system CPU time used so far


def fd_kinds(pid: int) -> tuple[str, ...]:
    """What each open descriptor of ``pid`` is, sorted (``socket:[123]`` -> ``socket``)."""
    kinds: list[str] = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        kinds.append(target.split(":[", 1)[0] if ":[" in target else target)
    return tuple(sorted(kinds))


def proc_stats(pid: int) -> ProcStats:
    """:class:`ProcStats` of ``pid`` from ``/proc`` (Linux)."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    kinds = fd_kinds(pid)
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name; utime = [11]
    cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS
    return ProcStats(rss, len(kinds), threads, kinds, cpu_s)


class PeakSampler:
    """Samples the RSS of some processes every ``interval_s`` until stopped; keeps peaks."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.peaks: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                rss = proc_stats(pid).rss
            except OSError:
                continue  # the process is gone; the test notices that elsewhere
            self.peaks[name] = max(self.peaks[name], rss)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval_s)  # the sampling period, not a wait for state

    def start(self) -> None:
        """Start sampling in a background task."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, int]:
        """Stop sampling (one last sample) and return the peaks."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        return dict(self.peaks)


MIB = 1024 * 1024


def mib(value: float) -> str:
    """Bytes as MiB with one decimal."""
    return f"{value / MIB:.1f}"


__all__ = [
    "MIB",
    "SUCCESS",
    "PeakSampler",
    "Planned",
    "ProcStats",
    "Sent",
    "Shape",
    "fd_kinds",
    "load_uid",
    "mib",
    "patient_id",
    "proc_stats",
    "send_association",
    "store_statuses",
    "write_round",
]
