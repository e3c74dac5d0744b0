"""The Clara ``processorSettings`` rules of the AE Title Job Processor (seed §13.1.3)."""

from __future__ import annotations

from typing import Any

import pytest

from processors.aetitle.settings import (
    PATIENT_ID,
    SERIES_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    AeTitleSettings,
    format_tag,
    parse_group_by,
    parse_settings,
)
from streams.errors import ConfigError

PIPE = {"pipeline-lung": "8abf244aff7647989d4f6b3987a85759"}


def parse(raw: dict[str, Any]) -> tuple[AeTitleSettings, list[str]]:
    return parse_settings("CLARA-CT", raw, where="scp.ae_titles[0]")


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return info.value.problems


# --- the seed's scenarios -------------------------------------------------------------


def test_scenario_1_settings() -> None:
    settings, warnings = parse_settings(
        "CLARA-CT",
        {
            "groupBy": "Patient",
            "priority": "normal",
            "timeout": 60,
            "pipeline-lung": "8abf244aff7647989d4f6b3987a85759",
            "pipeline-heart": "c5f996a71e1d4959bd6a2c8cf7130f88",
            "pipeline-breast": "eb48c784ef20425580db7d46a30829b2",
        },
    )
    assert settings == AeTitleSettings(
        group_by="00100020",
        priority="normal",
        timeout_s=60,
        pipelines=(
            ("lung", "8abf244aff7647989d4f6b3987a85759"),
            ("heart", "c5f996a71e1d4959bd6a2c8cf7130f88"),
            ("breast", "eb48c784ef20425580db7d46a30829b2"),
        ),
        group_by_keyword="PatientID",
    )
    assert warnings == []


def test_scenario_2_settings_use_the_defaults() -> None:
    settings, warnings = parse_settings(
        "CLARA-MG", {"priority": "higher", "pipeline-breast": "8abf244aff7647989d4f6b3987a85759"}
    )
    assert settings == AeTitleSettings(
        group_by="0020000D",
        priority="higher",
        timeout_s=5,
        pipelines=(("breast", "8abf244aff7647989d4f6b3987a85759"),),
        group_by_keyword="StudyInstanceUID",
    )
    assert warnings == []


# --- groupBy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag", "keyword"),
    [
        ("Patient", PATIENT_ID, "PatientID"),
        ("PATIENT", PATIENT_ID, "PatientID"),
        ("patient", PATIENT_ID, "PatientID"),
        ("Study", STUDY_INSTANCE_UID, "StudyInstanceUID"),
        ("sTuDy", STUDY_INSTANCE_UID, "StudyInstanceUID"),
        ("Series", SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        ("series", SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        ("0010,0020", PATIENT_ID, "PatientID"),
        ("(0010,0020)", PATIENT_ID, "PatientID"),
        ("00100020", PATIENT_ID, "PatientID"),
        ("0020,000d", STUDY_INSTANCE_UID, "StudyInstanceUID"),
        ("(0020,000E)", SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        ("0008,0050", "00080050", "AccessionNumber"),
        ("(0009,10ab)", "000910AB", ""),  # private tag: no keyword
    ],
)
def test_group_by_names_and_tag_forms(value: str, tag: str, keyword: str) -> None:
    settings, _ = parse({"groupBy": value, **PIPE})
    assert settings.group_by == tag
    assert settings.group_by_keyword == keyword


@pytest.mark.parametrize(
    "value",
    [
        "0000000",  # 7 characters
        "001000200",
        "0010,002",
        "GGGG,0010",
        "(0010,0020",
        "0010,0020)",
        "(00100020)",
        "0010;0020",
        "0010 0020",
        "00100020xyz",  # fo-dicom ignores trailing junk; we do not
        "-1",
        "Patients",
        "PatientID",
        "",
    ],
)
def test_group_by_rejects_anything_else(value: str) -> None:
    [line] = problems({"groupBy": value, **PIPE})
    assert line.startswith("scp.ae_titles[0] (CLARA-CT): processorSettings.groupBy: ")
    assert repr(value) in line
    assert "0010,0020, (0010,0020) or 00100020" in line  # the fix


@pytest.mark.parametrize("value", [None, True, 1.5, ["Patient"]])
def test_group_by_must_be_text(value: Any) -> None:
    [line] = problems({"groupBy": value, **PIPE})
    assert "processorSettings.groupBy" in line


def test_group_by_keyword_gets_the_tag_as_a_hint() -> None:
    [line] = problems({"groupBy": "AccessionNumber", **PIPE})
    assert "0008,0050" in line


def test_parse_group_by_and_format_tag() -> None:
    assert parse_group_by(" Study ") == STUDY_INSTANCE_UID
    assert parse_group_by("0000000") is None
    assert format_tag("0020000D") == "(0020,000D)"


# --- priority -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("lower", "lower"),
        ("Normal", "normal"),
        ("HIGHER", "higher"),
        ("Immediate", "immediate"),
        ("  higher ", "higher"),
    ],
)
def test_priority_any_case(value: str, expected: str) -> None:
    assert parse({"priority": value, **PIPE})[0].priority == expected


def test_priority_defaults_to_normal() -> None:
    assert parse(PIPE)[0].priority == "normal"


@pytest.mark.parametrize(
    "value", ["SonicSpeed", "unknown", "", "0", 5, -1, True, None, "low", "2.0"]
)
def test_priority_rejects_anything_else(value: Any) -> None:
    [line] = problems({"priority": value, **PIPE})
    assert line.startswith("scp.ae_titles[0] (CLARA-CT): processorSettings.priority: ")
    assert "is not one of lower, normal, higher, immediate" in line
    assert "1 (lower), 2 (normal), 3 (higher), 4 (immediate)" in line


def test_priority_message_matches_the_contract() -> None:
    assert problems({"priority": "SonicSpeed", **PIPE}) == [
        "scp.ae_titles[0] (CLARA-CT): processorSettings.priority: 'SonicSpeed' is not one "
        "of lower, normal, higher, immediate (or Clara's priority numbers 1 (lower), "
        "2 (normal), 3 (higher), 4 (immediate))"
    ]


# --- timeout --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(60, 60), ("60", 60), (" 60 ", 60), ("+7", 7), (5, 5), (3600, 3600)]
)
def test_timeout_integer_seconds(value: Any, expected: int) -> None:
    settings, warnings = parse({"timeout": value, **PIPE})
    assert settings.timeout_s == expected
    assert warnings == []


def test_timeout_defaults_to_5() -> None:
    assert parse(PIPE)[0].timeout_s == 5


@pytest.mark.parametrize("value", [1, 0, 4, "1", -1, "-30"])
def test_timeout_below_5_is_raised_to_5_with_a_warning(value: Any) -> None:
    settings, warnings = parse({"timeout": value, **PIPE})
    assert settings.timeout_s == 5
    [warning] = warnings
    assert warning.startswith("scp.ae_titles[0] (CLARA-CT): processorSettings.timeout: ")
    assert "minimum of 5 seconds; using 5" in warning


@pytest.mark.parametrize("value", [True, False, 1.5, 60.0, "abc", "1.5", "1e3", "0x10", "", None])
def test_timeout_rejects_non_integers(value: Any) -> None:
    [line] = problems({"timeout": value, **PIPE})
    assert line.startswith("scp.ae_titles[0] (CLARA-CT): processorSettings.timeout: ")
    assert "use an integer such as 60" in line


def test_timeout_out_of_int32_range() -> None:
    [line] = problems({"timeout": 2**31, **PIPE})
    assert "out of range" in line


# --- pipelines ------------------------------------------------------------------------


def test_pipeline_prefix_any_case_name_keeps_case_and_order() -> None:
    settings, _ = parse(
        {
            "PIPELINE-Lung": "a1",
            "timeout": 10,
            "Pipeline-heart": "b2",
            "pipeline-BREAST": "c3",
            "pipeline-lung": "d4",  # a different name: names are case-sensitive
        }
    )
    assert settings.pipelines == (("Lung", "a1"), ("heart", "b2"), ("BREAST", "c3"), ("lung", "d4"))


def test_pipeline_lung_upper_prefix() -> None:
    assert parse({"PIPELINE-Lung": "x"})[0].pipelines == (("Lung", "x"),)


def test_no_pipeline_is_an_error_naming_the_ae_title() -> None:
    [line] = problems({"groupBy": "Study"})
    assert line.startswith("scp.ae_titles[0] (CLARA-CT): processorSettings: ")
    assert "No pipeline defined for AE Title CLARA-CT" in line


def test_empty_settings_need_a_pipeline() -> None:
    assert len(problems({})) == 1


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"pipeline-": "x"}, "processorSettings.pipeline-: the pipeline name"),
        ({"pipeline-  ": "x"}, "name after 'pipeline-' is empty"),
        ({"pipeline-lung": ""}, "processorSettings.pipeline-lung: the pipeline id is empty"),
        ({"pipeline-lung": "  "}, "pipeline id is empty"),
        ({"pipeline-lung": None}, "pipeline id null is not text"),
        ({"pipeline-lung": 12345}, "pipeline id 12345 is not text; quote it"),
        ({"pipeline-lung": "a", "PIPELINE-lung": "b"}, "'lung' is already defined"),
    ],
)
def test_bad_pipelines(raw: dict[str, Any], fragment: str) -> None:
    [line] = problems(raw)
    assert fragment in line
    assert "(CLARA-CT)" in line


# --- unknown keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("colour", None),
        ("GroupBy", "'groupBy'"),  # keys are case-sensitive, as in Clara
        ("Timeout", "'timeout'"),
        ("priorty", "'priority'"),
        ("pipeline_lung", "'pipeline-lung'"),
        ("JobRetryDelay", "'jobRetryDelay'"),
    ],
)
def test_unknown_keys_are_errors_naming_key_and_ae_title(key: str, hint: str | None) -> None:
    [line] = problems({key: "x", **PIPE})
    assert line.startswith(f"scp.ae_titles[0] (CLARA-CT): processorSettings.{key}: ")
    assert "pipeline-<name>" in line
    if hint:
        assert hint in line


def test_every_problem_at_once_in_key_order() -> None:
    lines = problems(
        {"timeout": "abc", "priority": "SonicSpeed", "groupBy": "0000000", "colour": "blue"}
    )
    keys = ["timeout", "priority", "groupBy", "colour"]
    assert [line.split(": ")[1] for line in lines[:4]] == [f"processorSettings.{k}" for k in keys]
    assert "No pipeline defined" in lines[4]
    assert len(lines) == 5


def test_without_where_lines_name_the_ae_title() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings("CLARA-CT", {"priority": "x", **PIPE})
    assert info.value.problems[0].startswith("AE title CLARA-CT: processorSettings.priority")
