"""YAML reading for config files and environment values (JSON is YAML, so it works too).

Two deviations from PyYAML's safe loader, both to keep what the user wrote:

* a plain scalar of digits with a leading zero (``00100020``, ``0000000``) stays text —
  YAML 1.1 would read it as an octal number, turning a DICOM tag into ``32784``;
* a key repeated in one mapping is reported (PyYAML silently keeps the last one, which
  would, say, drop one of two ``pipeline-lung`` entries).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

_LEADING_ZERO_DIGITS = re.compile(r"[-+]?0[0-9_]+")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigLoader(yaml.SafeLoader):
    """Safe loader that keeps leading-zero digit strings and records duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                if first is None:
                    seen[key] = line
                    continue
            except TypeError:  # an unhashable key; the constructor reports it below
                continue
            self.duplicates.append(
                f"line {line}: key {key!r} repeats the one on line {first} "
                "(YAML keeps only the last); remove or rename one"
            )
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: ConfigLoader, node: Node) -> Any:
    if isinstance(node, ScalarNode) and _LEADING_ZERO_DIGITS.fullmatch(node.value):
        return node.value
    return loader.construct_yaml_int(node)  # type: ignore[arg-type]


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse a whole document; returns ``(data, duplicate-key problems)``.

    Raises :class:`yaml.YAMLError` on bad syntax.
    """
    loader = ConfigLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.duplicates


def parse_scalar(text: str) -> Any:
    """Read an environment value as a YAML scalar: ``60`` -> 60, ``true`` -> True,
    ``""`` -> None; anything that is not a plain scalar stays the original text."""
    try:
        value, _ = load_yaml(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return text
