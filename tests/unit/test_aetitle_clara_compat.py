"""Clara's ``processorSettings`` accepted as Clara accepts them (issue 20).

Every key the upstream ``AeTitleJobProcessorValidator`` takes (``timeout``,
``jobRetryDelay``, ``priority``, ``groupBy``, ``pipeline-*``; reference
clara-dicom-adapter-behaviour.md §2.2), with the value forms Clara parses: text or
numbers, priorities by name or by Clara's JobPriority number. ``jobRetryDelay`` is
accepted with a warning that names it, since retries belong to the submitter here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.aetitle.settings import parse_settings
from processors.config_check import check_config
from streams.errors import ConfigError

# The seed's two examples (§13.1.3), as Clara's JSON configuration carries them (the
# seed's typo '"priority: "normal"' corrected), and the upstream validator test's
# passing set (Validate_PassesValidation) with every value as text, as Clara stores them.
SEED_SCENARIO_1 = {
    "groupBy": "Patient",
    "priority": "normal",
    "timeout": 60,
    "pipeline-lung": "8abf244aff7647989d4f6b3987a85759",
    "pipeline-heart": "c5f996a71e1d4959bd6a2c8cf7130f88",
    "pipeline-breast": "eb48c784ef20425580db7d46a30829b2",
}
SEED_SCENARIO_2 = {"priority": "higher", "pipeline-breast": "8abf244aff7647989d4f6b3987a85759"}
UPSTREAM_VALIDATOR_PASS = {
    "timeout": "100",
    "jobRetryDelay": "100",
    "priority": "higher",
    "groupBy": "00100010",
    "pipeline-one": "ABCDEFGH",
}


def parse(raw: dict[str, Any]) -> tuple[Any, list[str]]:
    return parse_settings("CLARA", raw, where="scp.ae_titles[0]")


def test_every_key_of_the_upstream_validator_is_accepted() -> None:
    settings, warnings = parse(UPSTREAM_VALIDATOR_PASS)
    assert (settings.timeout_s, settings.priority, settings.group_by) == (
        100,
        "higher",
        "00100010",
    )
    assert settings.pipelines == (("one", "ABCDEFGH"),)
    [warning] = warnings
    assert warning.startswith("scp.ae_titles[0] (CLARA): processorSettings.jobRetryDelay: ")
    assert "not used" in warning
    assert "submitter.max_attempts" in warning


@pytest.mark.parametrize("value", [100, "100", " 5000 ", "-1", 0])
def test_job_retry_delay_takes_what_int_tryparse_takes(value: Any) -> None:
    settings, warnings = parse({"jobRetryDelay": value, "pipeline-a": "x"})
    assert settings.pipelines == (("a", "x"),)
    assert len(warnings) == 1
    assert "jobRetryDelay" in warnings[0]


@pytest.mark.parametrize("value", ["1.5", "abc", "", None, True, 2**31])
def test_job_retry_delay_that_clara_refuses_is_an_error(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"jobRetryDelay": value, "pipeline-a": "x"})
    [line] = info.value.problems
    assert line.startswith("scp.ae_titles[0] (CLARA): processorSettings.jobRetryDelay: ")
    assert "milliseconds" in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "lower"), ("2", "normal"), (" 3 ", "higher"), (4, "immediate"), ("Higher", "higher")],
)
def test_priority_by_clara_job_priority_number(value: Any, expected: str) -> None:
    assert parse({"priority": value, "pipeline-a": "x"})[0].priority == expected


@pytest.mark.parametrize(
    ("raw", "group_by", "priority", "timeout_s"),
    [
        (SEED_SCENARIO_1, "00100020", "normal", 60),
        (SEED_SCENARIO_2, "0020000D", "higher", 5),
        ({**SEED_SCENARIO_1, "timeout": "60", "groupBy": "(0010,0020)"}, "00100020", "normal", 60),
        ({**SEED_SCENARIO_2, "groupBy": "0010,0020", "priority": "3"}, "00100020", "higher", 5),
    ],
)
def test_the_seed_examples_as_clara_writes_them(
    raw: dict[str, Any], group_by: str, priority: str, timeout_s: int
) -> None:
    settings, warnings = parse(raw)
    assert (settings.group_by, settings.priority, settings.timeout_s) == (
        group_by,
        priority,
        timeout_s,
    )
    assert warnings == []


def test_config_check_accepts_a_block_copied_from_clara(tmp_path: Path) -> None:
    # JSON, as Clara's appsettings.json / REST body: a copy of the block works as it is.
    config = {
        "scp": {
            "ae_titles": [
                {"ae_title": "CLARA-CT", "processorSettings": SEED_SCENARIO_1},
                {"ae_title": "CLARA-MG", "processorSettings": SEED_SCENARIO_2},
                {"ae_title": "CLARA-UP", "processorSettings": UPSTREAM_VALIDATOR_PASS},
            ]
        }
    }
    path = tmp_path / "clara.json"
    path.write_bytes(orjson.dumps(config))
    result = check_config(path, {})
    jobretry = [w for w in result.warnings if "jobRetryDelay" in w]
    assert len(jobretry) == 1
    assert "scp.ae_titles[2] (CLARA-UP)" in jobretry[0]
