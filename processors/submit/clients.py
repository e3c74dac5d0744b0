"""Which platform client a ``submitter.kind`` means (docs/submitters.md: adding one)."""

from __future__ import annotations

from collections.abc import Callable

from processors.submit.http_platform import HttpPlatform
from processors.submit.kafka_platform import KafkaPlatform
from processors.submit.platform import PlatformClient
from streams.config import SubmitterConfig
from streams.errors import ConfigError


def _http(config: SubmitterConfig) -> PlatformClient:
    if not config.url:
        raise ConfigError(["submitter.url: is required when kind is http"])
    return HttpPlatform(config.url, timeout_s=config.timeout_s)


def _kafka(config: SubmitterConfig) -> PlatformClient:
    return KafkaPlatform()


#: ``submitter.kind`` → factory; call it inside the running event loop.
PLATFORMS: dict[str, Callable[[SubmitterConfig], PlatformClient]] = {
    "kafka": _kafka,
    "http": _http,
}


def make_platform(config: SubmitterConfig) -> PlatformClient:
    """Build the configured platform client (inside the running loop)."""
    factory = PLATFORMS.get(config.kind)
    if factory is None:
        known = ", ".join(sorted(PLATFORMS))
        raise ConfigError(
            [f"submitter.kind: {config.kind!r} is not a platform; use one of {known}"]
        )
    return factory(config)
