"""README's event table is the JSON Schemas' word (issue 20: it had drifted).

The table between ``<!-- event-table -->`` markers must list every event type that has a
schema in streams/events/schemas, on its topic, with exactly the schema's ``data``
fields in schema order (optional fields end in ``?``). When it fails, the message
holds the rows to paste.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from streams.events import EVENT_TYPES, schema_path

README = Path(__file__).resolve().parents[2] / "README.md"
SCHEMAS = Path(schema_path("group.closed")).parent

#: Where each event is written (streams/events/control.py, docs/processing.md, docs/export.md).
TOPICS = {
    "instance.received": "instances",
    "clock.tick": "instances",
    "group.close_requested": "instances",
    "group.closed": "jobs",
    "group.updated": "jobs",
    "job.submitted": "jobs",
    "job.failed": "jobs",
    "job.retry_requested": "jobs",
    "instances.removed": "jobs",
    "export.requested": "exports",
    "export.progress": "exports",
    "export.completed": "exports",
    "export.failed": "exports",
    "export.retry_requested": "exports",
    "source.heartbeat": "sources",
    "groups.open": "groups",
}

_ROW = re.compile(r"^\| `([a-z_.]+)` \| (\w+) \| `([^`]*)` \|")


def schema_types() -> list[str]:
    return sorted(p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json"))


def fields_cell(schema: dict[str, Any]) -> str:
    data = schema["properties"]["data"]
    required = set(data.get("required", []))
    return ", ".join(n if n in required else f"{n}?" for n in data.get("properties", {}))


def expected_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    # In the order of the data flow (TOPICS), then any type TOPICS does not know yet.
    for kind in [
        *(k for k in TOPICS if k in schema_types()),
        *sorted(set(schema_types()) - set(TOPICS)),
    ]:
        schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
        rows[kind] = (TOPICS.get(kind, "?"), fields_cell(schema))
    return rows


def readme_rows() -> dict[str, tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- event-table -->", 1)[1].split("<!-- /event-table -->", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_every_event_type_has_a_schema_and_a_topic() -> None:
    assert schema_types() == sorted(EVENT_TYPES)
    assert sorted(TOPICS) == schema_types()


def test_readme_event_table_matches_the_schemas() -> None:
    expected = expected_rows()
    paste = "\n".join(f"| `{k}` | {t} | `{f}` | … |" for k, (t, f) in expected.items())
    assert readme_rows() == expected, f"README event table rows should be:\n{paste}"
