"""The AE Title Job Processor: the default, built-in job processor (seed §13.1.3)."""

from processors.aetitle.grouping import clean_key, extra_tags, group_key_fn
from processors.aetitle.processor import NAME, AeTitleJobProcessor
from processors.aetitle.records import build_group_closed, dedupe_last_wins
from processors.aetitle.settings import AeTitleSettings, format_tag, parse_settings

__all__ = [
    "NAME",
    "AeTitleJobProcessor",
    "AeTitleSettings",
    "build_group_closed",
    "clean_key",
    "dedupe_last_wins",
    "extra_tags",
    "format_tag",
    "group_key_fn",
    "parse_settings",
]
