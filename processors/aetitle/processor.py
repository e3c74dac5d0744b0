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
from collections.abc import Iterable, Mapping
from typing import Any

from reactivex import abc
from reactivex import operators as ops
from reactivex.subject import Subject

from processors.aetitle.grouping import extra_tags, group_key_fn
from processors.aetitle.records import AeGroup, build_group_closed
from processors.aetitle.settings import AeTitleSettings, format_tag, parse_settings
from processors.base import JobProcessor, JobSink, to_group_instance
from processors.windows import SessionWindow, session_window
from streams.events import GroupClosed, GroupInstance, InputOffset, InstanceReceived

log = logging.getLogger(__name__)

NAME = "AE Title Job Processor"
DEFAULT_GRACE_MS = 1000
REASON_MISSING_KEY = "missing-group-key"
REASON_DUPLICATE = "duplicate"


class AeTitleJobProcessor(JobProcessor):
    """Groups an AE title's instances by the ``groupBy`` tag; a quiet group -> jobs.

    ``settings`` defaults to ``parse_settings(ae_title, processor_settings)`` (raises
    ``ConfigError``). ``grace_ms`` and ``caught_up`` are passed to the window (see
    :func:`processors.windows.session_window`): the Kafka wiring uses
    ``caught_up=False`` and reports partitions with :meth:`partition_caught_up`.
    """

    name = NAME

    def __init__(
        self,
        ae_title: str,
        processor_settings: Mapping[str, Any],
        sink: JobSink,
        scheduler: abc.SchedulerBase,
        *,
        settings: AeTitleSettings | None = None,
        grace_ms: int = DEFAULT_GRACE_MS,
        caught_up: bool = True,
    ) -> None:
        super().__init__(ae_title, processor_settings, sink, scheduler)
        if settings is None:
            settings, warnings = parse_settings(ae_title, processor_settings)
            for warning in warnings:
                log.warning("%s", warning)
        self.settings = settings
        self.group_by = format_tag(settings.group_by)
        self._key = group_key_fn(settings.group_by)
        self.window: SessionWindow[str, InstanceReceived, GroupInstance] = session_window(
            self._window_key,
            settings.timeout_s * 1000,
            scheduler,
            grace_ms=grace_ms,
            caught_up=caught_up,
            element_fn=to_group_instance,
            on_open=self.hold_offset,
        )
        self._input: Subject[tuple[int, int, InstanceReceived, str]] = Subject()
        self._subscription = self._input.pipe(self.window, ops.map(self._record)).subscribe(
            on_next=self._publish, on_error=self._failed, scheduler=scheduler
        )
        log.info(
            "%s for %s: groupBy=%s timeout=%ss priority=%s pipelines=%s",
            NAME,
            ae_title,
            self.group_by,
            settings.timeout_s,
            settings.priority,
            ", ".join(name for name, _ in settings.pipelines),
        )

    @classmethod
    def required_tags(cls, ae_title: str, processor_settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The ``groupBy`` tag when it is not PatientID/StudyInstanceUID/SeriesInstanceUID."""
        settings, _ = parse_settings(ae_title, processor_settings)
        return extra_tags(settings.group_by)

    # -- input -----------------------------------------------------------------------

    def handle_instance(self, instance: InstanceReceived, position: InputOffset) -> None:
        """Add the instance to its group, or reclaim it when the group key is missing."""
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
            self.remove_instances([instance], REASON_MISSING_KEY)
            return
        self._input.on_next((position.partition, position.offset, instance, key))

    def on_covered(self, instance: InstanceReceived, position: InputOffset) -> None:
        """A replayed input that a closed group already holds still moves the clock."""
        self.window.advance(position.partition, instance.received_at)

    def _window_key(self, instance: InstanceReceived) -> str:
        # Only used if a record arrives without its key; handle_instance passes it.
        return self._key(instance) or ""

    # -- output ----------------------------------------------------------------------

    def _record(self, group: AeGroup) -> tuple[GroupClosed, tuple[GroupInstance, ...]]:
        return build_group_closed(
            group, processor=NAME, ae_title=self.ae_title, settings=self.settings
        )

    def _publish(self, result: tuple[GroupClosed, tuple[GroupInstance, ...]]) -> None:
        try:
            self._write(*result)
        except Exception as exc:
            # Rx detaches an observer that raises: make the failure loud, not silent.
            self.fail(exc)
            raise

    def _write(self, record: GroupClosed, superseded: tuple[GroupInstance, ...]) -> None:
        log.info(
            "%s %s: timeout elapsed for a group by %s with %d instances (%d inputs); %d jobs",
            NAME,
            self.ae_title,
            self.group_by,
            len(record.instances),
            len(record.inputs),
            len(record.jobs),
        )
        self.close_group(record)
        if superseded:
            self.remove_instances(superseded, REASON_DUPLICATE)

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
