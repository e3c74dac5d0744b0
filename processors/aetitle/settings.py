"""Settings of the AE Title Job Processor: the seed's ``processorSettings`` keys.

:func:`parse_settings` turns the raw mapping into :class:`AeTitleSettings` or raises one
:class:`ConfigError` listing every problem (seed §13.1.3; Clara's
``AeTitleJobProcessor.InitializeSettings`` and its validator, see
``reference/clara-dicom-adapter-behaviour.md`` §2.2). Every key Clara's validator takes
is accepted as Clara accepts it: priorities by name (any case) or by Clara's job
priority number (1 lower … 4 immediate), ``jobRetryDelay`` (milliseconds) accepted
with a warning that it is not used here (retries belong to the submitter). Where Clara
is loose we stay strict, on purpose: a ``groupBy`` tag must be exactly ``GGGG,EEEE``,
``(GGGG,EEEE)`` or ``GGGGEEEE``, and unknown keys are errors (Clara's validator
refuses them too; only its processor ignored them).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from processors.aetitle.completion import load_rule
from streams.config import show
from streams.errors import ConfigError
from streams.events import PRIORITIES, Priority

PATIENT_ID = "00100020"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"

DEFAULT_GROUP_BY = STUDY_INSTANCE_UID
DEFAULT_PRIORITY: Priority = "normal"
DEFAULT_TIMEOUT_S = 5
MIN_TIMEOUT_S = 5  # seed: "minimum 5 seconds"; Clara raises smaller values to 5
PIPELINE_PREFIX = "pipeline-"
KNOWN_KEYS = (
    "groupBy",
    "priority",
    "timeout",
    "maxAge",
    "jobRetryDelay",
    "lateArrivals",
    "lateWindow",
    "completeWhen",
)
#: Clara's JobPriority numbers (clara-platform jobs.proto: 0 is UNKNOWN) -> our names.
CLARA_PRIORITY_NUMBERS: dict[int, Priority] = {
    1: "lower",
    2: "normal",
    3: "higher",
    4: "immediate",
}
LATE_NEW_GROUP = "new-group"  # a late instance starts a group of its own (Clara, default)
LATE_AMEND = "amend"  # ... or amends a group closed less than lateWindow ago (group.updated)
DEFAULT_LATE_WINDOW_S = 60

GROUP_NAMES = {"patient": PATIENT_ID, "study": STUDY_INSTANCE_UID, "series": SERIES_INSTANCE_UID}
_KEYWORDS = {
    PATIENT_ID: "PatientID",
    STUDY_INSTANCE_UID: "StudyInstanceUID",
    SERIES_INSTANCE_UID: "SeriesInstanceUID",
}
_HEX4 = "([0-9A-Fa-f]{4})"
_TAG = re.compile(rf"\({_HEX4},{_HEX4}\)|{_HEX4},{_HEX4}|{_HEX4}{_HEX4}")
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")  # .NET int.TryParse(NumberStyles.Integer)
_INT32 = (-(2**31), 2**31 - 1)
RULES_HELP = "use ImagesInAcquisition, NumberOfSeriesRelatedInstances or package.module:function"
_GROUP_BY_HELP = (
    "use Patient, Study or Series (any case) or a tag as 0010,0020, (0010,0020) or 00100020"
)


@dataclass(frozen=True, slots=True)
class AeTitleSettings:
    """Parsed ``processorSettings`` of one AE title (seed §13.1.3)."""

    group_by: str  # tag as 8 upper-case hex digits, e.g. "0020000D"
    priority: Priority
    timeout_s: int
    pipelines: tuple[tuple[str, str], ...]  # (pipeline name, pipeline id), config order
    group_by_keyword: str = ""  # "PatientID", "StudyInstanceUID", ... or "" for other tags
    max_age_s: int | None = None  # a group open longer than this closes (reason max_age)
    late_arrivals: str = LATE_NEW_GROUP  # new-group | amend (issue 16: versions)
    late_window_s: int = DEFAULT_LATE_WINDOW_S  # how long after a close a group can be amended
    complete_when: str | None = None  # a completion rule (processors/aetitle/completion.py)


def format_tag(tag: str) -> str:
    """``"00100020"`` -> ``"(0010,0020)"``."""
    return f"({tag[:4]},{tag[4:]})"


def parse_group_by(value: str) -> str | None:
    """``Patient``/``Study``/``Series`` (any case) or a tag in one of the three forms
    (hex, any case) -> 8 upper-case hex digits; ``None`` if it is neither."""
    text = value.strip()
    named = GROUP_NAMES.get(text.lower())
    if named is not None:
        return named
    match = _TAG.fullmatch(text)
    if match is None:
        return None
    return "".join(g for g in match.groups() if g is not None).upper()


def group_by_keyword(tag: str) -> str:
    """The DICOM keyword of a tag (``"PatientID"``), or ``""`` if the dictionary has none."""
    if tag in _KEYWORDS:
        return _KEYWORDS[tag]
    keyword: str = keyword_for_tag(int(tag, 16))
    return keyword


def parse_settings(
    ae_title: str, raw: Mapping[str, Any], *, where: str | None = None
) -> tuple[AeTitleSettings, list[str]]:
    """Parse one AE title's ``processorSettings``; returns ``(settings, warnings)``.

    Raises :class:`ConfigError` with every problem, one line each, e.g.
    ``scp.ae_titles[0] (CLARA-CT): processorSettings.priority: 'SonicSpeed' is not one of
    lower, normal, higher, immediate``. ``where`` is the key path of the AE title entry
    (``scp.ae_titles[0]``); without it lines start with ``AE title CLARA-CT``.
    """
    ctx = f"{where} ({ae_title})" if where else f"AE title {ae_title}"
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{ctx}: processorSettings: expected a mapping, got {show(raw)}"])
    parser = _Parser(ctx, ae_title)
    for key, value in raw.items():
        parser.take(key, value)
    return parser.finish()


class _Parser:
    """Collects values, problems and warnings over one pass of the raw mapping."""

    def __init__(self, ctx: str, ae_title: str) -> None:
        self.ctx = ctx
        self.ae_title = ae_title
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.group_by = DEFAULT_GROUP_BY
        self.priority: Priority = DEFAULT_PRIORITY
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.max_age_s: int | None = None
        self.late_arrivals = LATE_NEW_GROUP
        self.late_window_s = DEFAULT_LATE_WINDOW_S
        self.complete_when: str | None = None
        self.pipelines: dict[str, str] = {}
        self.pipeline_keys: dict[str, str] = {}
        self.saw_pipeline_key = False

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.ctx}: processorSettings.{key}: {text}")

    def take(self, key: Any, value: Any) -> None:
        if not isinstance(key, str):
            self.problems.append(
                f"{self.ctx}: processorSettings: key {show(key)} is not text; quote it"
            )
        elif key == "groupBy":
            self._group_by(value)
        elif key == "priority":
            self._priority(value)
        elif key == "timeout":
            self._timeout(value)
        elif key == "maxAge":
            self._max_age(value)
        elif key == "jobRetryDelay":
            self._job_retry_delay(value)
        elif key == "lateArrivals":
            self._late_arrivals(value)
        elif key == "lateWindow":
            self._late_window(value)
        elif key == "completeWhen":
            self._complete_when(value)
        elif key[: len(PIPELINE_PREFIX)].lower() == PIPELINE_PREFIX:
            self._pipeline(key, value)
        else:
            self.problem(key, _unknown_key(key))

    def _group_by(self, value: Any) -> None:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        tag = parse_group_by(text) if isinstance(text, str) else None
        if tag is not None:
            self.group_by = tag
            return
        hint = ""
        if isinstance(text, str) and tag_for_keyword(text.strip()) is not None:
            found = f"{tag_for_keyword(text.strip()):08X}"
            hint = f" (for the {text.strip()} attribute write {found[:4]},{found[4:]})"
        self.problem(
            "groupBy",
            f"{show(value)} is not a grouping{hint}; {_GROUP_BY_HELP}",
        )

    def _priority(self, value: Any) -> None:
        name = value.strip().lower() if isinstance(value, str) else None
        for priority in PRIORITIES:
            if priority == name:
                self.priority = priority
                return
        number = _integer(value)
        if number is not None and number in CLARA_PRIORITY_NUMBERS:
            self.priority = CLARA_PRIORITY_NUMBERS[number]
            return
        numbers = ", ".join(f"{n} ({p})" for n, p in CLARA_PRIORITY_NUMBERS.items())
        self.problem(
            "priority",
            f"{show(value)} is not one of {', '.join(PRIORITIES)} "
            f"(or Clara's priority numbers {numbers})",
        )

    def _job_retry_delay(self, value: Any) -> None:
        # Clara: int.TryParse only, milliseconds between its 3 submission attempts.
        number = _integer(value)
        if number is None or not _INT32[0] <= number <= _INT32[1]:
            self.problem(
                "jobRetryDelay",
                f"{show(value)} is not a whole number of milliseconds; use e.g. 5000 (or "
                "remove it: it is not used here)",
            )
            return
        self.warnings.append(
            f"{self.ctx}: processorSettings.jobRetryDelay: accepted as in Clara but not used: "
            "job retries are set by submitter.max_attempts, submitter.backoff_initial_s and "
            "submitter.backoff_max_s"
        )

    def _timeout(self, value: Any) -> None:
        number = _integer(value)
        if number is None:
            self.problem(
                "timeout",
                f"{show(value)} is not a whole number of seconds; use an integer such as 60 "
                f"(minimum {MIN_TIMEOUT_S})",
            )
        elif not _INT32[0] <= number <= _INT32[1]:
            self.problem("timeout", f"{number} is out of range; use a number of seconds such as 60")
        elif number < MIN_TIMEOUT_S:
            self.timeout_s = MIN_TIMEOUT_S
            self.warnings.append(
                f"{self.ctx}: processorSettings.timeout: {show(value)} is below the minimum of "
                f"{MIN_TIMEOUT_S} seconds; using {MIN_TIMEOUT_S}"
            )
        else:
            self.timeout_s = number

    def _max_age(self, value: Any) -> None:
        number = _integer(value)
        if number is None or number < 1 or number > _INT32[1]:
            self.problem(
                "maxAge",
                f"{show(value)} is not a whole number of seconds above 0; use e.g. 3600 "
                "(a group open that long closes even if instances keep coming)",
            )
        else:
            self.max_age_s = number

    def _late_arrivals(self, value: Any) -> None:
        text = value.strip().lower() if isinstance(value, str) else None
        if text in (LATE_NEW_GROUP, LATE_AMEND):
            self.late_arrivals = text
        else:
            self.problem(
                "lateArrivals",
                f"{show(value)} is not one of {LATE_NEW_GROUP}, {LATE_AMEND} ({LATE_AMEND}: an "
                "instance arriving less than lateWindow seconds after its group closed makes "
                "a new version of that group, group.updated)",
            )

    def _late_window(self, value: Any) -> None:
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            number = int(value)
        if number is None or number < 1 or number > _INT32[1]:
            self.problem(
                "lateWindow",
                f"{show(value)} is not a whole number of seconds above 0; use e.g. 60 (how "
                "long after a group closed a late instance still amends it)",
            )
        else:
            self.late_window_s = number

    def _complete_when(self, value: Any) -> None:
        if value is None:
            return  # explicitly off
        if not isinstance(value, str) or not value.strip():
            self.problem("completeWhen", f"{show(value)} is not a rule name; {RULES_HELP}")
            return
        try:
            load_rule(value.strip())
        except ValueError as exc:
            self.problem("completeWhen", f"{show(value)}: {exc}")
            return
        self.complete_when = value.strip()

    def _pipeline(self, key: str, value: Any) -> None:
        self.saw_pipeline_key = True
        name = key[len(PIPELINE_PREFIX) :]
        ok = True
        if not name.strip():
            self.problem(
                key, "the pipeline name after 'pipeline-' is empty; use e.g. pipeline-lung"
            )
            ok = False
        elif name in self.pipelines:
            self.problem(
                key,
                f"pipeline {name!r} is already defined by {self.pipeline_keys[name]!r}; "
                "pipeline names must be unique, rename one",
            )
            ok = False
        if not isinstance(value, str):
            fix = "quote it" if value is not None else "set it to the pipeline's id"
            self.problem(key, f"pipeline id {show(value)} is not text; {fix}")
        elif not value.strip():
            self.problem(key, "the pipeline id is empty; set it to the pipeline's id")
        elif ok:
            self.pipelines[name] = value.strip()
            self.pipeline_keys[name] = key

    def finish(self) -> tuple[AeTitleSettings, list[str]]:
        if not self.saw_pipeline_key:
            self.problems.append(
                f"{self.ctx}: processorSettings: No pipeline defined for AE Title "
                f"{self.ae_title}; add at least one 'pipeline-<name>: <pipeline id>' key"
            )
        if self.problems:
            raise ConfigError(self.problems)
        settings = AeTitleSettings(
            group_by=self.group_by,
            priority=self.priority,
            timeout_s=self.timeout_s,
            pipelines=tuple(self.pipelines.items()),
            group_by_keyword=group_by_keyword(self.group_by),
            max_age_s=self.max_age_s,
            late_arrivals=self.late_arrivals,
            late_window_s=self.late_window_s,
            complete_when=self.complete_when,
        )
        return settings, self.warnings


def _integer(value: Any) -> int | None:
    """A whole number as .NET ``int.TryParse`` reads it (an int, or text such as " 60 ")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def _unknown_key(key: str) -> str:
    allowed = (
        "allowed: groupBy, priority, timeout, jobRetryDelay, maxAge, lateArrivals, lateWindow, "
        "completeWhen and pipeline-<name> keys"
    )
    guess = next((k for k in KNOWN_KEYS if k.lower() == key.lower()), None)
    if guess is not None:
        return f"unknown setting (keys are case-sensitive: did you mean {guess!r}?); {allowed}"
    squashed = key.lower().replace("_", "").replace(" ", "")
    if squashed.startswith("pipeline") and len(squashed) > len("pipeline"):
        fixed = PIPELINE_PREFIX + key[len("pipeline") :].lstrip("_ -")
        return f"unknown setting (did you mean {fixed!r}?); {allowed}"
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
    if close:
        return f"unknown setting (did you mean {close[0]!r}?); {allowed}"
    return f"unknown setting; {allowed}"


#: groupBy tags whose groups never span two patients, so keying events by the called AE
#: title and the patient puts every instance of a group on one partition; any other tag
#: is repartitioned (``AeTitleJobProcessor.repartition_key``).
NESTED_IN_PATIENT = frozenset({PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID})
