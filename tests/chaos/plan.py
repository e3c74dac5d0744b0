"""A chaos run's plan: what is sent, when, through which SCP and sender, and which faults.

Pure and seeded: ``make_plan(seed)`` always gives the same plan. The seed fixes *what*
happens and *when* (relative to the start of streaming); thread and network timing still
vary between runs of one seed, which is the point of running many.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydicom.uid import generate_uid

SenderKind = Literal["dcmtk", "pynetdicom"]
FaultKind = Literal["kill_scp", "kill_processor", "kill_submitter", "pause_broker", "disk_full"]

#: Called AE titles of a chaos run and the grouping each one uses; Modality spans
#: patients, so CHAOS-MOD is repartitioned (docs/processing.md, "Repartitioning").
AE_GROUP_BY = {"CHAOS-ST": "Study", "CHAOS-SE": "Series", "CHAOS-MOD": "'0008,0060'"}
MODALITIES = ("CT", "MR")
SCPS = 2
PROCESSORS = 2


@dataclass(frozen=True)
class Instance:
    """One planned C-STORE: a small CT instance of ``study``/``series``."""

    ae: str
    patient: str
    study: str
    series: str
    sop: str
    number: int
    modality: str = "CT"


@dataclass(frozen=True)
class Batch:
    """One association: ``instances`` sent to SCP ``scp`` by ``sender`` at ``at`` s."""

    at: float
    scp: int
    sender: SenderKind
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class Fault:
    """``kind`` at ``at`` s; ``target`` picks the SCP/processor; ``duration`` is the pause,
    the fill time, or how long a killed role stays down before it is restarted."""

    at: float
    kind: FaultKind
    target: int
    duration: float


@dataclass(frozen=True)
class Plan:
    """Everything a run does, fixed by ``seed``."""

    seed: int
    batches: tuple[Batch, ...]
    faults: tuple[Fault, ...]
    refused_studies: frozenset[str]  # studies whose jobs the platform refuses for good (422)
    platform_fail_rate: float  # share of platform calls answered 503 (retried)

    @property
    def instances(self) -> list[Instance]:
        return [i for b in self.batches for i in b.instances]


def _uid(rng: random.Random) -> str:
    return generate_uid(entropy_srcs=[str(rng.getrandbits(128))])


def _studies(rng: random.Random) -> list[list[Instance]]:
    # Not a prefix of any AE title (the pynetdicom sender calls itself CHAOS-PYN).
    patients = [f"CHAOS-PAT-{n}" for n in range(rng.randint(3, 5))]
    studies = []
    for _ in range(rng.randint(8, 12)):
        ae = rng.choice(sorted(AE_GROUP_BY))
        patient, study = rng.choice(patients), _uid(rng)
        modality = rng.choice(MODALITIES)
        instances = []
        for _ in range(rng.randint(1, 3)):
            series = _uid(rng)
            for _ in range(rng.randint(2, 6)):
                number = len(instances) + 1
                instances.append(Instance(ae, patient, study, series, _uid(rng), number, modality))
        studies.append(instances)
    return studies


def _batches(rng: random.Random, stream_s: float) -> list[Batch]:
    batches = []
    for instances in _studies(rng):
        at = rng.uniform(0.0, stream_s)
        rest = list(instances)
        while rest:
            n = rng.randint(1, len(rest))
            chunk, rest = rest[:n], rest[n:]
            sender: SenderKind = rng.choice(("dcmtk", "pynetdicom"))
            batches.append(Batch(round(at, 3), rng.randrange(SCPS), sender, tuple(chunk)))
            at += rng.uniform(0.2, 1.0)  # well under the 5 s timeout: one group
    return sorted(batches, key=lambda b: b.at)


def _faults(rng: random.Random, stream_s: float, max_pause_s: float) -> list[Fault]:
    faults = [
        Fault(rng.uniform(1.0, stream_s), "kill_scp", rng.randrange(SCPS), rng.uniform(0.5, 3)),
        Fault(
            rng.uniform(1.0, stream_s),
            "kill_processor",
            rng.randrange(PROCESSORS),
            rng.uniform(0.5, 3),
        ),
        Fault(rng.uniform(1.0, stream_s), "kill_submitter", 0, rng.uniform(0.5, 3)),
        Fault(rng.uniform(1.0, stream_s), "pause_broker", 0, rng.uniform(1.0, max_pause_s)),
        Fault(rng.uniform(1.0, stream_s), "disk_full", 0, rng.uniform(1.0, 4.0)),
    ]
    rounded = [Fault(round(f.at, 3), f.kind, f.target, round(f.duration, 3)) for f in faults]
    return sorted(rounded, key=lambda f: f.at)


def make_plan(seed: int, *, stream_s: float = 15.0, max_pause_s: float = 30.0) -> Plan:
    """The plan of run ``seed``: 8 to 12 studies of 3 to 5 patients over ``stream_s`` seconds,
    each role killed once, the broker paused once (≤ ``max_pause_s``), the disk filled once."""
    rng = random.Random(seed)
    batches = _batches(rng, stream_s)
    faults = _faults(rng, stream_s, max_pause_s)
    studies = sorted({i.study for b in batches for i in b.instances})
    refused = frozenset(rng.sample(studies, 1)) if rng.random() < 0.5 else frozenset()
    return Plan(seed, tuple(batches), tuple(faults), refused, rng.choice((0.0, 0.2, 0.4)))
