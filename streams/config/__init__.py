"""The adapter's configuration: one frozen, validated settings object (DESIGN.md §3.2).

Use :func:`load_config`; it reads a YAML/JSON file, applies ``DICOM_ADAPTER_*``
environment overrides and raises :class:`streams.errors.ConfigError` listing every
problem at once.
"""

from streams.config.export import DicomDestination, DicomWebDestination, ExportConfig
from streams.config.fields import mask_url
from streams.config.loader import (
    ENV_PREFIX,
    KAFKA_ENV,
    ConfigSource,
    build_config,
    load_config,
    read_source,
)
from streams.config.models import (
    DEFAULT_CALLING_AE,
    DEFAULT_PROCESSOR,
    AdapterConfig,
    AeTitleConfig,
    HttpConfig,
    KafkaConfig,
    ScpConfig,
    SubmitterConfig,
)
from streams.config.problems import format_validation_error, show, where

__all__ = [
    "DEFAULT_CALLING_AE",
    "DEFAULT_PROCESSOR",
    "ENV_PREFIX",
    "KAFKA_ENV",
    "AdapterConfig",
    "AeTitleConfig",
    "ConfigSource",
    "DicomDestination",
    "DicomWebDestination",
    "ExportConfig",
    "HttpConfig",
    "KafkaConfig",
    "ScpConfig",
    "SubmitterConfig",
    "build_config",
    "format_validation_error",
    "load_config",
    "mask_url",
    "read_source",
    "show",
    "where",
]
