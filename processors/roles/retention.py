"""How long the adapter's topics must keep records at least (checked at start-up).

Below these, an existing topic breaks the adapter, and the roles refuse to start
(:func:`streams.kafka.ensure_adapter_topics`):

* instances: the longest a group can wait for its close -- its ``maxAge`` or else its
  quiet ``timeout``, plus ``processor.source_idle_timeout_s`` that a silent source may
  hold the bus clock back. A record deleted before its group closed is lost to a
  replay after a crash or rebalance.
* jobs: that, and the payload retention: the reclaimer needs a job's ``job.submitted``
  until its payload expires.

A group that keeps receiving instances stays open for longer (without ``maxAge``);
configured retentions are far longer than these minimums (docs/operations.md).
"""

from __future__ import annotations

from processors.aetitle.settings import parse_settings
from streams.config import AdapterConfig
from streams.config.models import DEFAULT_PROCESSOR
from streams.errors import ConfigError
from streams.kafka import topic_names


def longest_window_s(config: AdapterConfig) -> float:
    """The longest wait for a group's close over the AE Title Job Processors."""
    longest = 0
    for ae in config.scp.ae_titles:
        if ae.processor != DEFAULT_PROCESSOR:
            continue  # a custom processor's windows are its own
        try:
            settings, _ = parse_settings(ae.ae_title, ae.processor_settings)
        except ConfigError:
            continue  # reported by the role that builds the processor
        longest = max(longest, settings.max_age_s or settings.timeout_s)
    return longest + config.processor.source_idle_timeout_s


def topic_needs_ms(config: AdapterConfig) -> dict[str, int]:
    """``{topic: shortest retention.ms the adapter can work with}``."""
    names = topic_names(config.kafka.topic_prefix)
    window_ms = round(longest_window_s(config) * 1000)
    payload_h = config.submitter.payload_retention_hours
    payload_ms = round((payload_h or 0) * 3_600_000)
    return {names.instances: window_ms, names.jobs: max(window_ms, payload_ms)}
