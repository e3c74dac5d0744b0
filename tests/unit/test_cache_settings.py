"""The cache processor's ``processorSettings`` and how ``config check`` reports them."""

from __future__ import annotations

import pytest

from processors.cache import CacheProcessor, CacheSettings, parse_cache_settings
from processors.config_check import check_processors
from streams.errors import ConfigError


def problems(raw: object, where: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_cache_settings("CACHE", raw, where=where)  # type: ignore[arg-type]
    for line in info.value.problems:
        assert "\n" not in line
    return list(info.value.problems)


def test_defaults_and_named_pipelines() -> None:
    assert parse_cache_settings("CACHE", {}) == (CacheSettings(), [])
    settings, warnings = parse_cache_settings(
        "CACHE", {"priority": " Higher ", "pipeline-lung": " P1 ", "pipeline-heart": "P2"}
    )
    assert warnings == []
    assert settings.priority == "higher"
    assert settings.pipelines == (("lung", "P1"), ("heart", "P2"))
    assert settings.pipeline_id("heart") == "P2" and settings.pipeline_id("x") is None


def test_every_problem_is_listed_with_ae_title_key_and_fix() -> None:
    lines = problems(
        {"priority": "fast", "groupBy": "Study", "timeout": 5, "pipeline-": "x",
         "pipeline-a": "", "pipeline-b": 3, "prority": "normal"},
        where="scp.ae_titles[2]",
    )  # fmt: skip
    assert len(lines) == 7
    assert all(line.startswith("scp.ae_titles[2] (CACHE): processorSettings") for line in lines)
    text = "\n".join(lines)
    assert "priority: 'fast' is not one of lower, normal, higher, immediate" in text
    assert "groupBy: does not apply to the cache processor" in text
    assert "timeout: does not apply" in text
    assert "pipeline-: the pipeline name after 'pipeline-' is empty" in text
    assert "pipeline-a: the pipeline id is empty" in text
    assert "pipeline-b: pipeline id 3 is not text; quote it" in text
    assert "prority: unknown setting (did you mean 'priority'?)" in text


def test_not_a_mapping() -> None:
    [line] = problems(["priority"])
    assert line.startswith("AE title CACHE: processorSettings: expected a mapping")


def test_config_check_validates_custom_processor_settings() -> None:
    data = {
        "scp": {
            "ae_titles": [
                {
                    "ae_title": "OK",
                    "processor": "cache",
                    "processorSettings": {"priority": "lower"},
                },
                {"ae_title": "BAD", "processor": "cache", "processorSettings": {"timeout": 9}},
                {"ae_title": "NOTPROC", "processor": "pathlib:Path"},
            ]
        }
    }
    found = check_processors(data)
    assert found.processors["OK"] is CacheProcessor
    assert "BAD" in found.processors  # resolved; its settings are the problem
    [bad, notproc] = found.problems
    assert bad.startswith("scp.ae_titles[1] (BAD): processorSettings.timeout: does not apply")
    assert notproc == (
        "scp.ae_titles[2] (NOTPROC): processor: 'pathlib:Path' is pathlib.Path, not a subclass "
        "of processors.base.JobProcessor; point it at a job processor class"
    )
