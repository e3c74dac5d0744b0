"""Building blocks of the settings models: field types, the strict base model, and
helpers that add our own problems to pydantic's so every problem comes out at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from streams.config.fields import check_ae_title


def not_bool(value: Any) -> Any:
    # Lax pydantic reads true as 1; "port: yes" is a mistake, not a port.
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; use a number")
    return value


AeTitle = Annotated[str, AfterValidator(check_ae_title)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
Int = Annotated[int, BeforeValidator(not_bool)]
Float = Annotated[float, BeforeValidator(not_bool)]
Port = Annotated[Int, Field(ge=0, le=65535)]

#: The word that makes a retention setting unlimited (``payload_retention_hours: never``).
NEVER = "never"


def hours_or_never(value: Any) -> float | None:
    """A duration in hours (0 or more), or ``None`` for the word ``never`` (any case)."""
    if isinstance(value, str) and value.strip().lower() == NEVER:
        return None
    fix = f"use a number of hours (0 or more, e.g. 24) or {NEVER}"
    if value is None:
        raise ValueError(f"has no value; {fix}")
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; {fix}")
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of hours; {fix}") from None
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"{value!r} is not a number of hours; {fix}")
    return hours


def _hours_out(value: float | None) -> float | str:
    return NEVER if value is None else value


#: Hours, or ``None`` meaning "never" (kept without limit); dumped as the word, so a
#: dumped config reads back (``null`` would be "no value").
Hours = Annotated[float | None, PlainValidator(hours_or_never), PlainSerializer(_hours_out)]


class StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def problem(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    # No context is passed, so braces in user values are never taken for template fields.
    return InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=value)


def validate_with(
    handler: Callable[[Any], Any], value: Any, extra: list[InitErrorDetails], title: str
) -> Any:
    """Run pydantic's own validation and add ``extra`` problems, so all come out at once."""
    try:
        result = handler(value)
    except ValidationError as exc:
        if not extra:
            raise
        raise ValidationError.from_exception_data(exc.title, [*as_details(exc), *extra]) from None
    if extra:
        raise ValidationError.from_exception_data(title, extra)
    return result


def as_details(exc: ValidationError) -> list[InitErrorDetails]:
    """Re-raisable copies of pydantic's errors that keep ``type`` and ``ctx`` for the
    formatter (our own ``config`` problems keep their message)."""
    out: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "config":
            out.append(problem(loc, err["input"], err["msg"]))
            continue
        detail = InitErrorDetails(type=err["type"], loc=loc, input=err["input"])
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        out.append(detail)
    return out


def duplicates(items: Any, key: str, what: str, prefix: str) -> list[InitErrorDetails]:
    """One problem per repeated ``key`` value in a raw list of mappings (case-sensitive)."""
    if not isinstance(items, Iterable) or isinstance(items, str | bytes | dict):
        return []
    seen: dict[str, int] = {}
    out: list[InitErrorDetails] = []
    for index, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
        if not isinstance(value, str):
            continue
        if value in seen:
            out.append(
                problem(
                    (index, key),
                    value,
                    f"{value!r} is already used by {prefix}[{seen[value]}]; {what} must be "
                    "unique (case-sensitive), remove or rename one",
                )
            )
        else:
            seen[value] = index
    return out


def numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def check_backoff(value: dict[str, Any], extra: list[InitErrorDetails]) -> None:
    low, high = value.get("backoff_initial_s", 1.0), value.get("backoff_max_s", 60.0)
    if numbers(low, high) and low > high:
        extra.append(
            problem(
                ("backoff_max_s",),
                high,
                f"{high} is below backoff_initial_s ({low}); make it at least that",
            )
        )
