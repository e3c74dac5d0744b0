"""The AE Title Job Processor: the default, built-in job processor (seed §13.1.3)."""

from processors.aetitle.processor import NAME, AeTitleJobProcessor
from processors.aetitle.settings import AeTitleSettings, format_tag, parse_settings

__all__ = [
    "NAME",
    "AeTitleJobProcessor",
    "AeTitleSettings",
    "format_tag",
    "parse_settings",
]
