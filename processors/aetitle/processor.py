"""The AE Title Job Processor (seed §13.1.3; Clara's ``AeTitleJobProcessor``) as Rx.

    instances --> handle_instance: missing/blank key? -> reclaim (logged without PHI)
              --> Subject --> session_window(group key, timeout) --> build group.closed
              --> sink.group_closed (one job per pipeline)   [+ reclaim superseded copies]

Windows are a function of the log (DESIGN.md §4): a group closes when its partition's
event clock passes ``max(received_at) + timeout`` or, once the consumer has caught up
with the partition, when ``now - grace`` reaches it. Deliberate differences from Clara
(reference/clara-dicom-adapter-behaviour.md §6): instances without a group key are
reclaimed (Clara leaks them), duplicates of a SOP Instance UID are collapsed (last
wins), job names use the group's close time from the log, and there is no retry loop
here (submission and retries belong to the submitter, per job, never re-submitting a
pipeline that succeeded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reactivex import operators as ops
from reactivex.subject import Subject

from processors.aetitle.completion import load_rule
from processors.aetitle.grouping import extra_tags, group_key_fn
from processors.aetitle.records import AeGroup, build_group_closed
from processors.aetitle.settings import (
    LATE_AMEND,
    NESTED_IN_PATIENT,
    AeTitleSettings,
    format_tag,
    parse_settings,
)
from processors.aetitle.versions import Versions
from processors.base import NEW, OTHER_AE, InstanceItem, JobProcessor, item_time
from processors.contracts import ProcessorContext
from processors.jobnames import group_id
from processors.windows import REASON_FORCED, OpenGroup, SessionWindow, session_window
from streams.events import (
    GroupClosed,
    GroupCloseRequested,
    GroupInstance,
    GroupUpdated,
    InputOffset,
    InstanceReceived,
    OpenGroupInfo,
)

log = logging.getLogger(__name__)

#: What the window takes: ``(partition, offset, instance, group key, log time)``.
WindowItem = tuple[int, int, InstanceReceived, str, int]

NAME = "AE Title Job Processor"
DEFAULT_GRACE_MS = 1000
REASON_MISSING_KEY = "missing-group-key"


class AeTitleJobProcessor(JobProcessor):
    """Groups an AE title's instances by the ``groupBy`` tag; a quiet group -> jobs.

    ``settings`` come from :func:`~processors.aetitle.settings.parse_settings` (raises
    ``ConfigError``). The window starts with a grace of :data:`DEFAULT_GRACE_MS` and
    every partition caught up; the runtime sets the grace from ``processor.grace_ms`` in
    :meth:`start` and reports every assigned partition with :meth:`partition_caught_up`.
    """

    name = NAME
    settings: AeTitleSettings

    @classmethod
    def parse_settings(
        cls, ae_title: str, processor_settings: Mapping[str, Any], *, where: str | None = None
    ) -> tuple[AeTitleSettings, list[str]]:
        """The seed's keys (see :mod:`processors.aetitle.settings`)."""
        return parse_settings(ae_title, processor_settings, where=where)

    def setup(self) -> None:
        """The group-key function and the session window."""
        settings = self.settings
        self.group_by = format_tag(settings.group_by)
        self._key = group_key_fn(settings.group_by)
        self.window: SessionWindow[str, InstanceReceived, GroupInstance] = session_window(
            self._window_key,
            settings.timeout_s * 1000,
            self.scheduler,
            grace_ms=DEFAULT_GRACE_MS,
            element_fn=GroupInstance.of,
        )
        if settings.max_age_s is not None:
            self.window.state.max_age_ms = settings.max_age_s * 1000
        self.versions: Versions | None = None
        if settings.late_arrivals == LATE_AMEND:
            self.versions = Versions(self.ae_title, settings.late_window_s * 1000)
        if settings.complete_when is not None:
            self.window.state.complete_fn = load_rule(settings.complete_when).check
        self._input: Subject[WindowItem | list[WindowItem]] = Subject()
        self._subscription = self._input.pipe(self.window, ops.map(self._record)).subscribe(
            on_next=self._publish, on_error=self._failed, scheduler=self.scheduler
        )
        log.info(
            "%s for %s: groupBy=%s timeout=%ss priority=%s pipelines=%s",
            NAME,
            self.ae_title,
            self.group_by,
            settings.timeout_s,
            settings.priority,
            ", ".join(name for name, _ in settings.pipelines),
        )

    @classmethod
    def required_tags(cls, ae_title: str, processor_settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The ``groupBy`` tag when it is not PatientID/StudyInstanceUID/SeriesInstanceUID."""
        settings, _ = parse_settings(ae_title, processor_settings)
        rule = load_rule(settings.complete_when) if settings.complete_when else None
        return extra_tags(settings.group_by) + (rule.tags if rule is not None else ())

    @classmethod
    def repartition_key(cls, settings: AeTitleSettings) -> Callable[[InstanceReceived], str] | None:
        """The ``groupBy`` value when the tag is not nested in a patient (Modality,
        StationName, ...): such groups span patients, hence partitions."""
        if settings.group_by in NESTED_IN_PATIENT:
            return None
        key = group_key_fn(settings.group_by)
        return lambda instance: key(instance) or ""

    async def start(self, context: ProcessorContext) -> None:
        """Take the process's clock: the bus's ticks (``log_clock``) or the wall clock
        with the grace of ``processor.grace_ms``."""
        self.window.set_grace(context.grace_ms)
        if context.log_clock:
            self.window.use_log_clock()

    @property
    def quiet_timeout_ms(self) -> int:
        """``timeout`` of the processorSettings, in milliseconds."""
        return self.settings.timeout_s * 1000

    @property
    def open_groups(self) -> int:
        """Open windows over all partitions."""
        return self.window.open_groups

    # -- input -----------------------------------------------------------------------

    def on_batch(self, items: Sequence[InstanceItem]) -> None:
        """:meth:`~processors.base.JobProcessor.on_next` for each item, with the runs of
        keyed instances handed to the window as one list (one Rx hop per run, not per
        instance). A covered or key-less instance first hands over the run before it, so
        the window sees everything in log order, as item by item."""
        if type(self).handle_record is not AeTitleJobProcessor.handle_record:
            super().on_batch(items)  # a subclass changed the per-instance path: keep it
            return
        self.check_running()
        triage, key_fn = self.triage, self._key
        run: list[WindowItem] = []
        for item in items:
            partition, offset, instance = item[0], item[1], item[2]
            verdict = triage(partition, offset, instance)
            if verdict == NEW:
                key = key_fn(instance)
                if key is not None:
                    run.append((partition, offset, instance, key, item_time(item)))
                    continue
            if verdict != OTHER_AE:
                run = self._hand_over(run)
                self.dispatch(item, verdict)
        self._hand_over(run)

    def _hand_over(self, run: list[WindowItem]) -> list[WindowItem]:
        if run:
            self._input.on_next(run)
            return []
        return run

    def handle_instance(self, instance: InstanceReceived, position: InputOffset) -> None:
        """:meth:`handle_record` at the instance's ``received_at``."""
        self.handle_record(instance, position, instance.received_at)

    def handle_record(self, instance: InstanceReceived, position: InputOffset, time: int) -> None:
        """Add the instance to its group at ``time`` (its log time), or reclaim it when
        the group key is missing."""
        key = self._key(instance)
        if key is None:
            self.counters.missing_key += 1
            # No PHI: the tag and the SOP class, never the patient or the key.
            log.warning(
                "%s %s: instance missing required DICOM key for grouping by %s "
                "(SOP class %s); ignoring it and reclaiming its file",
                NAME,
                self.ae_title,
                self.group_by,
                instance.sop_class_uid,
            )
            self.remove_instances([instance], REASON_MISSING_KEY, inputs=[position])
            return
        self._input.on_next((position.partition, position.offset, instance, key, time))

    def on_covered(self, instance: InstanceReceived, position: InputOffset) -> None:
        """A replayed input that a closed group already holds still moves the clock
        (with the log clock only ticks move it)."""
        if not self.window.log_clock:
            self.window.advance(position.partition, instance.received_at)

    def on_watermark(self, partition: int, watermark: int) -> None:
        """A ``clock.tick``: close the groups of ``partition`` due before it."""
        self.window.advance(partition, watermark)

    def next_due(self, partition: int) -> int | None:
        """The earliest due time of an open group of ``partition``."""
        return self.window.state.next_deadline(partition)

    def close_requested(self, partition: int, request: GroupCloseRequested) -> str:
        """Close the open group ``request.group_id`` now with reason ``forced``."""
        for group in self.window.state.open_groups_of(partition):
            if group_id(self.ae_title, partition, group.first_offset) == request.group_id:
                at = self.window.state.clock(partition) or group.last_received_at
                self.window.state.close(partition, group.key, REASON_FORCED, at)
                return "closed"
        return "unknown"

    def open_groups_on(self, partition: int) -> tuple[OpenGroupInfo, ...]:
        """The open groups of ``partition`` with their ids, for operators."""
        return self._infos(partition, None)

    def open_groups_head(self, partition: int, limit: int) -> tuple[tuple[OpenGroupInfo, ...], int]:
        """The first ``limit`` open groups, without a snapshot of the others."""
        return self._infos(partition, limit), self.window.state.open_count(partition)

    def _infos(self, partition: int, limit: int | None) -> tuple[OpenGroupInfo, ...]:
        ae_title, group_by = self.ae_title, self.group_by
        return tuple(
            OpenGroupInfo(
                group_id=group_id(ae_title, partition, g.first_offset),
                group_by=group_by,
                group_key=g.key,
                instances=g.instances,
                first_received_at=g.first_received_at,
                last_received_at=g.last_received_at,
                deadline=g.due,
                due_reason=g.due_reason,
            )
            for g in self.window.state.open_groups_of(partition, limit)
        )

    def open_groups_version(self, partition: int) -> int | None:
        """The window's change counter of ``partition``."""
        return self.window.state.changes(partition)

    def groups(self, partitions: Iterable[int]) -> list[tuple[str, OpenGroup[str]]]:
        """``(group id, snapshot)`` of every open group of ``partitions``."""
        return [
            (group_id(self.ae_title, p, g.first_offset), g)
            for p in partitions
            for g in self.window.state.open_groups_of(p)
        ]

    def _window_key(self, instance: InstanceReceived) -> str:
        # Only used if a record arrives without its key; handle_instance passes it.
        return self._key(instance) or ""

    # -- output ----------------------------------------------------------------------

    def _record(self, group: AeGroup) -> tuple[GroupClosed, tuple[GroupInstance, ...]]:
        record, superseded = build_group_closed(
            group, processor=NAME, ae_title=self.ae_title, settings=self.settings
        )
        if self.versions is not None:
            record = self.versions.record(group.partition, group.key, record, group.deadline)
        return record, superseded

    def _publish(self, result: tuple[GroupClosed, tuple[GroupInstance, ...]]) -> None:
        try:
            self._write(*result)
        except Exception as exc:
            # Rx detaches an observer that raises: make the failure loud, not silent.
            self.fail(exc)
            raise

    def _write(self, record: GroupClosed, superseded: tuple[GroupInstance, ...]) -> None:
        if isinstance(record, GroupUpdated):
            log.info(
                "%s %s: late instances amended a group by %s: version %d with %d instances "
                "(%d added); %d jobs",
                NAME, self.ae_title, self.group_by, record.version,
                len(record.instances), len(record.added), len(record.jobs),
            )  # fmt: skip
            self.close_group(record, superseded=superseded)
            return
        log.info(
            "%s %s: a group by %s closed (%s) with %d instances (%d inputs); %d jobs",
            NAME,
            self.ae_title,
            self.group_by,
            record.reason,
            len(record.instances),
            len(record.inputs),
            len(record.jobs),
        )
        self.close_group(record, superseded=superseded)

    def _failed(self, error: Exception) -> None:
        log.error("%s %s: window failed: %s", NAME, self.ae_title, error)
        self.fail(error)

    # -- runtime hooks ---------------------------------------------------------------

    def stopped(self) -> None:
        """Complete the window: open (partial) groups are not emitted."""
        if self.failure is None:
            self._input.on_completed()

    def partition_caught_up(self, partition: int, caught_up: bool = True) -> None:
        """Let the wall clock close this partition's groups (or stop doing so)."""
        self.window.set_caught_up(partition, caught_up)

    def partitions_revoked(self, partitions: Iterable[int]) -> None:
        """Drop the open groups of revoked partitions without emitting them."""
        partitions = tuple(partitions)
        dropped = self.window.revoke(partitions)
        if self.versions is not None:
            self.versions.drop(partitions)
        if self._covered is not None:
            self._covered.drop(partitions)
        log.info(
            "%s %s: partitions %s revoked, %d open groups dropped",
            NAME,
            self.ae_title,
            list(partitions),
            dropped,
        )

    def held_offsets(self) -> dict[int, int]:
        """Oldest input offset of an open group, per partition (commit bound)."""
        return self.window.held_offsets()
