"""streams.scp.statuses: every status the SCP answers is defined there, once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from streams.scp import statuses
from streams.scp.statuses import STATUSES, describe

SCP = Path(statuses.__file__).resolve().parent
DOCS = SCP.parents[1] / "docs" / "scp.md"


def test_the_codes_answered_are_those_of_the_docs_each_under_one_name() -> None:
    assert {f"0x{code:04X}": status.name for code, status in STATUSES.items()} == {
        "0x0000": "SUCCESS",
        "0x0110": "STUDY_MISMATCH",
        "0x0117": "INVALID_SOP_INSTANCE",
        "0x0122": "SOP_CLASS_NOT_SUPPORTED",
        "0xA700": "OUT_OF_RESOURCES",
        "0xA900": "DATA_SET_MISMATCH",
        "0xC000": "CANNOT_UNDERSTAND",
        "0xC211": "UNEXPECTED_ERROR",
    }
    for code, status in STATUSES.items():
        assert getattr(statuses, status.name) == code
        assert status.description
    # docs/scp.md's status table names exactly these codes.
    table = [line for line in DOCS.read_text(encoding="utf-8").splitlines() if line[:1] == "|"]
    documented = {m for line in table for m in re.findall(r"`(0x[0-9A-F]{4})`", line)}
    assert documented == {f"0x{code:04X}" for code in STATUSES}


def test_no_other_scp_module_spells_a_status_code() -> None:
    # 0 is too common a literal to mean a status; 0x0110 is also the Message ID element
    # of every command set (PS3.7 §E.1), which the fast path reads by number.
    codes = set(STATUSES) - {0x0000, 0x0110}
    offenders = {}
    for path in sorted(SCP.glob("*.py")):
        if path.name == "statuses.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = [
            f"0x{node.value:04X} (line {node.lineno})"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in codes
        ]
        if found:
            offenders[path.name] = found
    assert offenders == {}, f"import these from streams.scp.statuses: {offenders}"


def test_describe_names_the_status_for_logs() -> None:
    assert describe(0xA700) == "0xA700 (Refused: Out of Resources)"
    assert describe(0xC211).startswith("0xC211 (")
    assert describe(0xB000) == "0xB000"  # not one the SCP answers: the code alone
