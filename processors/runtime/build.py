"""One job processor per configured AE title (``scp.ae_titles[*].processor``)."""

from __future__ import annotations

import logging
from typing import Any

from reactivex import abc

from processors.aetitle import AeTitleJobProcessor
from processors.base import JobProcessor, JobSink
from processors.registry import resolve_processor
from streams.config import AdapterConfig
from streams.errors import ConfigError

log = logging.getLogger(__name__)


def processor_classes(config: AdapterConfig) -> dict[str, type[JobProcessor]]:
    """The processor class of every AE title; raises :class:`ConfigError` listing every
    name that does not resolve to a ``JobProcessor`` subclass."""
    found: dict[str, type[JobProcessor]] = {}
    problems: list[str] = []
    for index, ae in enumerate(config.scp.ae_titles):
        where = f"scp.ae_titles[{index}] ({ae.ae_title}): processor"
        try:
            cls = resolve_processor(ae.processor)
        except ConfigError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
            continue
        if not issubclass(cls, JobProcessor):
            problems.append(
                f"{where}: {ae.processor!r} is {cls.__module__}.{cls.__qualname__}, not a "
                "subclass of processors.base.JobProcessor; point it at a job processor class"
            )
            continue
        found[ae.ae_title] = cls
    if problems:
        raise ConfigError(problems)
    return found


def build_processors(
    config: AdapterConfig,
    sink: JobSink,
    scheduler: abc.SchedulerBase,
    *,
    grace_ms: int | None = None,
) -> dict[str, JobProcessor]:
    """Construct the processors, by AE title, writing to ``sink`` and timing on
    ``scheduler``. AE Title Job Processors start with every partition "not caught up"
    (the Kafka wiring reports each partition) and ``grace_ms`` (default
    ``processor.grace_ms``). Raises :class:`ConfigError` naming the AE title."""
    grace = config.processor.grace_ms if grace_ms is None else grace_ms
    classes = processor_classes(config)
    out: dict[str, JobProcessor] = {}
    problems: list[str] = []
    for index, ae in enumerate(config.scp.ae_titles):
        cls = classes[ae.ae_title]
        kwargs: dict[str, Any] = {}
        if issubclass(cls, AeTitleJobProcessor):
            kwargs = {"grace_ms": grace, "caught_up": False}
        try:
            out[ae.ae_title] = cls(ae.ae_title, ae.processor_settings, sink, scheduler, **kwargs)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except Exception as exc:  # user code: a failing constructor is a config problem
            problems.append(
                f"scp.ae_titles[{index}] ({ae.ae_title}): processor {ae.processor!r} could "
                f"not be created: {type(exc).__name__}: {exc}"
            )
    if problems:
        raise ConfigError(problems)
    return out
