"""Completion rules: close a group as soon as it is complete, not only when quiet.

Off by default. ``processorSettings.completeWhen`` names a rule:

* ``ImagesInAcquisition`` -- the group holds as many instances as the newest
  instance's Images in Acquisition (0020,1002) says (PS3.3 C.7.6.1);
* ``NumberOfSeriesRelatedInstances`` -- the same with (0020,1209) (PS3.3 C.7.3.1,
  set by some senders on every instance of a series);
* ``package.module:function`` -- your own: ``function(count, instance) -> bool`` is
  called after each instance joins its group (``count`` instances now, ``instance``
  the newest, an ``InstanceReceived``); it may list the DICOM tags it reads (8 hex
  digits) in a ``required_tags`` attribute, which the SCP then puts in
  ``instance.tags``.

A rule is a function of the group's instances only, so a replay of the log closes
the same groups at the same place. A complete group closes with reason ``complete``
at its newest instance's time; an instance that arrives later starts a new group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from streams.events import InstanceReceived

Rule = Callable[[int, InstanceReceived], bool]


@dataclass(frozen=True, slots=True)
class CompletionRule:
    """A named rule and the tags it reads."""

    name: str
    check: Rule
    tags: tuple[str, ...] = ()


def _count_reaches(tag: str) -> Rule:
    def check(count: int, instance: InstanceReceived) -> bool:
        value = instance.tags.get(tag, "").strip(" \x00")
        return value.isdigit() and 0 < int(value) <= count

    return check


BUILT_IN: dict[str, CompletionRule] = {
    "ImagesInAcquisition": CompletionRule(
        "ImagesInAcquisition", _count_reaches("00201002"), ("00201002",)
    ),
    "NumberOfSeriesRelatedInstances": CompletionRule(
        "NumberOfSeriesRelatedInstances", _count_reaches("00201209"), ("00201209",)
    ),
}


def load_rule(name: str) -> CompletionRule:
    """The rule ``name`` (built-in or ``module:function``); :class:`ValueError` saying
    why it cannot be used."""
    builtin = BUILT_IN.get(name)
    if builtin is not None:
        return builtin
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"use one of {', '.join(BUILT_IN)} or 'package.module:function' for your own"
        )
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"cannot load {name!r} ({exc}); check the module and function name"
        ) from None
    if not callable(found):
        raise ValueError(f"{name!r} is not a function(count, instance) -> bool")
    tags = tuple(str(t).upper() for t in getattr(found, "required_tags", ()))
    return CompletionRule(name, found, tags)
