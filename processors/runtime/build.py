"""One job processor per configured AE title (``scp.ae_titles[*].processor``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from reactivex import abc

from processors.base import JobProcessor
from processors.contracts import JobSink
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
    config: AdapterConfig, sink: JobSink | Mapping[str, JobSink], scheduler: abc.SchedulerBase
) -> dict[str, JobProcessor]:
    """Construct the processors, by AE title, writing to ``sink`` (one for all, or one
    per AE title) and timing on ``scheduler``. Raises :class:`ConfigError` naming the AE
    title."""
    classes = processor_classes(config)
    out: dict[str, JobProcessor] = {}
    problems: list[str] = []
    for index, ae in enumerate(config.scp.ae_titles):
        cls = classes[ae.ae_title]
        mine = sink[ae.ae_title] if isinstance(sink, Mapping) else sink
        try:
            out[ae.ae_title] = cls(ae.ae_title, ae.processor_settings, mine, scheduler)
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
