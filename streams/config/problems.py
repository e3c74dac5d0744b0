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
_HIDDEN_KEYS = frozenset({"password", "token"})  # never echoed, not even masked
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
    """The location prefix of a problem, with the ``name`` (else the AE title) of list
    items that have one.

    ``('scp', 'ae_titles', 0, 'processor')`` -> ``scp.ae_titles[0] (CLARA-CT): processor``;
    ``('export', 'destinations', 1, 'port')`` -> ``export.destinations[1] (pacs): port``.
    """
    node = data
    for i, seg in enumerate(loc):
        node = _child(node, seg)
        if isinstance(seg, int) and isinstance(node, Mapping):
            title = node.get("name")
            if not isinstance(title, str):
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
        tagged: Loc = tuple(err["loc"])
        text = _describe(err, tagged, model)
        loc = _untagged(tagged, data)
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
    if loc and loc[-1] in _HIDDEN_KEYS:
        v = "'***'"
    if loc and loc[-1] == "[key]":
        return f"key {v} is not text; quote it (e.g. '{value}')"
    if kind == "config":
        return str(err["msg"])
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "missing":
        return "is required but missing; add it"
    if kind == "union_tag_not_found":
        return f"has no {_unquote(ctx.get('discriminator'))}; add one of {_tags(loc, model)}"
    if kind == "union_tag_invalid":
        return (
            f"{_unquote(ctx.get('discriminator'))} {show(ctx.get('tag'))} is not one of "
            f"{_tags(loc, model)}"
        )
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
    """Keys accepted by the model found at ``loc`` (list indexes skipped).

    In a list of tagged models (``export.destinations``: ``kind: dicom | dicomweb``), a
    segment naming a tag (pydantic puts it in error locations) picks that model; without
    it, the keys of every model of the list are allowed.
    """
    candidates: list[type[BaseModel]] = [model]
    for seg in loc:
        if isinstance(seg, int):
            continue
        tagged = [m for m in candidates if seg in _tag_values(m)]
        if len(candidates) > 1 and tagged:
            candidates = tagged[:1]
            continue
        found: list[type[BaseModel]] = []
        for current in candidates:
            fields = {(f.alias or name): f for name, f in current.model_fields.items()}
            field = fields.get(seg)
            if field is not None:
                found.extend(_models_in(field.annotation))
        candidates = found
        if not candidates:
            return []
    keys: list[str] = []
    for current in candidates:
        keys.extend(
            key for name, f in current.model_fields.items() if (key := f.alias or name) not in keys
        )
    return keys


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(m for m in _models_in(arg) if m not in found)
    return found


def _tag_values(model: type[BaseModel]) -> tuple[str, ...]:
    """The literal values of a model's ``kind`` field (its tag in a tagged union)."""
    field = model.model_fields.get("kind")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return ()
    return tuple(str(v) for v in typing.get_args(field.annotation))


def _tags(loc: Loc, model: type[BaseModel] | None) -> str:
    """``'dicom' or 'dicomweb'``: the tags allowed in the list at ``loc``."""
    if model is None:
        return "the documented kinds"
    found: list[str] = []
    for member in _members_at(model, loc):
        found.extend(_tag_values(member))
    return " or ".join(repr(t) for t in found) if found else "the documented kinds"


def _members_at(model: type[BaseModel], loc: Loc) -> list[type[BaseModel]]:
    candidates: list[type[BaseModel]] = [model]
    for seg in loc:
        if isinstance(seg, int):
            continue
        found: list[type[BaseModel]] = []
        for current in candidates:
            field = current.model_fields.get(str(seg))
            if field is not None:
                found.extend(_models_in(field.annotation))
        candidates = found
    return candidates


def _untagged(loc: Loc, data: Any) -> Loc:
    """``loc`` without the tag pydantic adds after a list index in a tagged union
    (``export.destinations[0].dicom.port`` -> ``export.destinations[0].port``)."""
    out: list[str | int] = []
    node = data
    for i, seg in enumerate(loc):
        previous = loc[i - 1] if i else None
        if (
            isinstance(previous, int)
            and isinstance(node, Mapping)
            and node.get("kind") == seg
            and seg not in node
        ):
            continue
        out.append(seg)
        node = _child(node, seg)
    return tuple(out)


def _unquote(value: Any) -> str:
    return str(value or "kind").strip("'")


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
