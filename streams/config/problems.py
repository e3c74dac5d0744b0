"""Turn a pydantic ``ValidationError`` into one plain line per problem.

Each line names the key path (``scp.ae_titles[0] (CLARA-CT): processor``), the bad
value and the fix, e.g.::

    scp.port: 70000 is too large; use at most 65535
    scp.ae_titles[1] (CLARA-CT): procesor: unknown key (did you mean 'processor'?); ...

No pydantic jargon ("Input should be ..."), no URLs to pydantic's docs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from streams.config.fields import mask_url

Loc = tuple[str | int, ...]
_SECRET_KEYS = frozenset({"url"})
_MAX_SHOWN = 60


def show(value: Any, *, secret: bool = False) -> str:
    """A short, YAML-flavoured rendering of a user's value for a message."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        if secret:
            value = mask_url(value)
        if len(value) > _MAX_SHOWN:
            value = value[: _MAX_SHOWN - 3] + "..."
        return repr(value)
    return str(value)


def format_loc(loc: Sequence[str | int]) -> str:
    """``('scp', 'ae_titles', 0, 'port')`` -> ``scp.ae_titles[0].port``."""
    out = ""
    for seg in loc:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


def where(loc: Sequence[str | int], data: Any) -> str:
    """The location prefix of a problem, with the AE title of list items that have one.

    ``('scp', 'ae_titles', 0, 'processor')`` -> ``scp.ae_titles[0] (CLARA-CT): processor``.
    """
    node = data
    for i, seg in enumerate(loc):
        node = _child(node, seg)
        if isinstance(seg, int) and isinstance(node, Mapping):
            title = node.get("ae_title")
            if isinstance(title, str):
                head = f"{format_loc(loc[: i + 1])} ({title})"
                tail = format_loc(loc[i + 1 :])
                return f"{head}: {tail}" if tail else head
    return format_loc(loc) or "config"


def format_validation_error(
    exc: ValidationError,
    data: Any = None,
    *,
    model: type[BaseModel] | None = None,
    origins: Mapping[Loc, str] | None = None,
) -> list[str]:
    """One line per error of ``exc``.

    ``data`` is the raw input (to name AE titles), ``model`` the validated model class (to
    list the allowed keys next to an unknown one), ``origins`` maps key paths set from
    environment variables to the variable's name, so the line says where a value came from.
    """
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        text = _describe(err, loc, model)
        if loc and loc[-1] == "[key]":  # a mapping key of the wrong type
            loc = loc[:-2]
        line = f"{where(loc, data)}: {text}"
        origin = _origin(loc, origins or {})
        if origin:
            line += f" (set by environment variable {origin})"
        if line not in lines:
            lines.append(line)
    return lines


def _describe(err: Mapping[str, Any], loc: Loc, model: type[BaseModel] | None) -> str:
    kind: str = err["type"]
    value = err.get("input")
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    v = show(value, secret=bool(loc) and loc[-1] in _SECRET_KEYS)
    if loc and loc[-1] == "[key]":
        return f"key {v} is not text; quote it (e.g. '{value}')"
    if kind == "config":
        return str(err["msg"])
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return "is required but missing; add it"
    if kind == "extra_forbidden":
        return _unknown_key(loc, model)
    if value is None and kind.endswith(("_type", "_parsing")):
        return "has no value; set one or remove the key"
    simple = {
        "string_type": f"{v} is not text; quote it",
        "int_type": f"{v} is not a whole number; use an integer",
        "int_parsing": f"{v} is not a whole number; use an integer",
        "int_from_float": f"{v} is not a whole number; use an integer",
        "float_type": f"{v} is not a number; use e.g. 5 or 2.5",
        "float_parsing": f"{v} is not a number; use e.g. 5 or 2.5",
        "bool_type": f"{v} is not true or false; use true or false",
        "bool_parsing": f"{v} is not true or false; use true or false",
        "dict_type": f"expected a mapping of keys to values, got {v}",
        "model_type": f"expected a mapping of keys to values, got {v}",
        "model_attributes_type": f"expected a mapping of keys to values, got {v}",
        "list_type": f"expected a list, got {v}",
        "tuple_type": f"expected a list, got {v}",
        "path_type": f"{v} is not a path; use e.g. ./data",
        "string_too_short": "is empty; give it a value",
    }
    if kind in simple:
        return simple[kind]
    bounds = {
        "greater_than_equal": ("ge", "too small; use at least"),
        "greater_than": ("gt", "too small; use more than"),
        "less_than_equal": ("le", "too large; use at most"),
        "less_than": ("lt", "too large; use less than"),
    }
    if kind in bounds:
        name, phrase = bounds[kind]
        return f"{v} is {phrase} {ctx.get(name)}"
    if kind == "literal_error":
        return f"{v} is not one of {ctx.get('expected')}"
    return f"{v}: {str(err['msg']).lower()}"


def _unknown_key(loc: Loc, model: type[BaseModel] | None) -> str:
    text = "unknown key"
    allowed = allowed_keys(model, loc[:-1]) if model is not None else []
    if not allowed:
        return f"{text}; remove it"
    key = str(loc[-1])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    lowered = {a.lower(): a for a in allowed}
    guess = lowered.get(key.lower()) or (close[0] if close else None)
    if guess:
        text += f" (did you mean {guess!r}?)"
    return f"{text}; allowed here: {', '.join(allowed)}"


def allowed_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """Keys accepted by the model found at ``loc`` (list indexes skipped)."""
    current: type[BaseModel] | None = model
    for seg in loc:
        if isinstance(seg, int):
            continue
        if current is None:
            return []
        fields = {(f.alias or name): f for name, f in current.model_fields.items()}
        field = fields.get(seg)
        current = _model_in(field.annotation) if field is not None else None
    if current is None:
        return []
    return [(f.alias or name) for name, f in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _child(node: Any, seg: str | int) -> Any:
    if isinstance(seg, int):
        if isinstance(node, Sequence) and not isinstance(node, str) and 0 <= seg < len(node):
            return node[seg]
        return None
    return node.get(seg) if isinstance(node, Mapping) else None


def _origin(loc: Loc, origins: Mapping[Loc, str]) -> str | None:
    for end in range(len(loc), 0, -1):
        name = origins.get(loc[:end])
        if name:
            return name
    return None
