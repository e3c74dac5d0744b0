"""``instance.received`` records and a recording job sink for processor tests.

The sink is a real implementation of ``processors.base.JobSink`` that keeps what it is
given (with the virtual time it was given at), standing in for the runtime's ledger
writer in pure tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler

from processors.aetitle import AeTitleJobProcessor
from processors.contracts import Removal
from streams.events import GroupClosed, InputOffset, InstanceReceived

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_sop_counter = itertools.count(1)


def make_instance(
    *,
    received_at: int,
    ae: str = "AET1",
    patient: str = "P1",
    study: str = "S1",
    series: str = "Se1",
    sop: str | None = None,
    uri: str | None = None,
    tags: Mapping[str, str] | None = None,
    sop_class: str = CT_IMAGE_STORAGE,
    association: str = "assoc-1",
) -> InstanceReceived:
    """An instance of ``ae`` stamped ``received_at`` (epoch ms); SOP UID unique by default."""
    sop = sop or f"1.2.826.0.1.3680043.8.498.{next(_sop_counter)}"
    return InstanceReceived(
        called_ae=ae,
        calling_ae="MODALITY1",
        calling_host="127.0.0.1",
        association_id=association,
        sop_class_uid=sop_class,
        sop_instance_uid=sop,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient_id=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        received_at=received_at,
        uri=uri or f"file:///storage/{ae}/{association}/{sop}.dcm",
        size=1024,
        tags=dict(tags or {}),
    )


def positioned(
    instances: Iterable[InstanceReceived], partition: int = 0, start: int = 0
) -> list[tuple[int, int, InstanceReceived]]:
    """``(partition, offset, instance)`` items with consecutive offsets."""
    return [(partition, start + i, inst) for i, inst in enumerate(instances)]


def hot_source(
    scheduler: TestScheduler, items: Sequence[tuple[int, int, InstanceReceived]]
) -> Observable[tuple[int, int, InstanceReceived]]:
    """A hot observable emitting each item at its ``received_at`` (1 tick = 1 s)."""
    return scheduler.create_hot_observable(
        [ReactiveTest.on_next(item[2].received_at / 1000, item) for item in items]
    )


def ae_title_processor(
    sink: object,
    scheduler: TestScheduler,
    settings: object,
    *,
    ae: str = "AET1",
    grace_ms: int = 0,
    caught_up: bool = True,
) -> AeTitleJobProcessor:
    """An AE Title Job Processor as a test wants it: parsed ``settings``, ``grace_ms``
    (0: closes exactly at the deadline) and every partition caught up or not (not: only
    the event clock closes groups, as while the runtime replays a backlog)."""
    processor = AeTitleJobProcessor(ae, {}, sink, scheduler, settings=settings)  # type: ignore[arg-type]
    processor.window.set_grace(grace_ms)
    processor.window.state.caught_up_default = caught_up
    return processor


@dataclass
class RecordingSink:
    """Keeps ``(virtual time, record)`` of every closed group and every removal (the
    superseded copies a group is written with are removals with reason ``duplicate``),
    and the inputs each removal consumed."""

    scheduler: TestScheduler
    closed: list[tuple[float, GroupClosed]] = field(default_factory=list)
    removed: list[tuple[float, str, tuple[str, ...], str]] = field(default_factory=list)
    removed_inputs: list[tuple[InputOffset, ...]] = field(default_factory=list)

    def group_closed(self, record: GroupClosed, superseded: Sequence[object] = ()) -> None:
        self.closed.append((self.scheduler.clock, record))
        if superseded:
            self.remove(Removal(record.ae_title, superseded, "duplicate"))  # type: ignore[arg-type]

    def remove(self, removal: Removal) -> None:
        uris = tuple(i.uri for i in removal.instances)
        self.removed.append((self.scheduler.clock, removal.ae_title, uris, removal.reason))
        self.removed_inputs.append(tuple(removal.inputs))

    @property
    def records(self) -> list[GroupClosed]:
        return [record for _, record in self.closed]

    @property
    def jobs(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(pipeline name, group key, sorted SOP UIDs)`` of every job."""
        return [
            (
                job.pipeline_name,
                record.group_key,
                tuple(sorted(i.sop_instance_uid for i in record.instances)),
            )
            for record in self.records
            for job in record.jobs
        ]
