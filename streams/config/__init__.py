"""The adapter's configuration: one frozen, validated settings object (DESIGN.md §3.2).

Use :func:`load_config`; it reads a YAML/JSON file, applies ``DICOM_ADAPTER_*``
environment overrides and raises :class:`streams.errors.ConfigError` listing every
problem at once.
"""

from streams.config.fields import AE_TITLE_MAX_LEN, check_ae_title, mask_url
from streams.config.loader import (
    CONFIG_PATH_ENV,
    ENV_PREFIX,
    KAFKA_ENV,
    ConfigSource,
    build_config,
    load_config,
    read_source,
)
from streams.config.models import (
    DEFAULT_PROCESSOR,
    AdapterConfig,
    AeTitleConfig,
    HttpConfig,
    KafkaConfig,
    ProcessorRuntimeConfig,
    ScpConfig,
    SourceAe,
    SubmitterConfig,
)
from streams.config.problems import format_loc, format_validation_error, show, where

__all__ = [
    "AE_TITLE_MAX_LEN",
    "CONFIG_PATH_ENV",
    "DEFAULT_PROCESSOR",
    "ENV_PREFIX",
    "KAFKA_ENV",
    "AdapterConfig",
    "AeTitleConfig",
    "ConfigSource",
    "HttpConfig",
    "KafkaConfig",
    "ProcessorRuntimeConfig",
    "ScpConfig",
    "SourceAe",
    "SubmitterConfig",
    "build_config",
    "check_ae_title",
    "format_loc",
    "format_validation_error",
    "load_config",
    "mask_url",
    "read_source",
    "show",
    "where",
]
