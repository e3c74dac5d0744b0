"""Job names (Clara's FixJobName, reference §5 cases 28-29) and deterministic job ids."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.jobnames import (
    JOB_ID_NAMESPACE,
    MAX_JOB_NAME,
    fix_job_name,
    job_id,
    job_name,
    utc_stamp,
    uuid5_text,
)

SPECIALS = "_~!@#$%^&*()=+[]\\|:;\"',<.>/?"
VALID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")  # group.closed schema pattern


@pytest.mark.parametrize("c", list(SPECIALS))
def test_every_special_character_becomes_a_single_dash(c: str) -> None:
    assert fix_job_name(f"{c}A{c}{c}{c}Z{c}") == "a-z"


def test_long_names_are_cut_to_63_characters() -> None:
    name = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!!!"
    assert len(name) == 75
    fixed = fix_job_name(name)
    assert fixed == "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0"
    assert len(fixed) == MAX_JOB_NAME == 63


def test_no_trailing_dash_after_truncation() -> None:
    assert fix_job_name("a" * 62 + "_b") == "a" * 62


def test_clara_examples() -> None:
    assert fix_job_name("AET1-first-20210101120000") == "aet1-first-20210101120000"
    assert job_name("MY_AE", "brain_tumor", 1_732_800_013_999) == (
        "my-ae-brain-tumor-20241128132013"
    )
    assert job_name("LIVERAET", "LIVERAI", 1_640_427_030_000) == "liveraet-liverai-20211225101030"


def test_non_ascii_letters_are_replaced() -> None:
    assert fix_job_name("Ärzte-ÅE") == "rzte-e"
    assert VALID.fullmatch(fix_job_name("ÄÖÜ-x"))


def test_a_name_with_nothing_valid_is_an_error() -> None:
    with pytest.raises(ValueError, match="no letters or digits"):
        fix_job_name("--__--")


def test_utc_stamp_is_pure_utc() -> None:
    assert utc_stamp(0) == "19700101000000"
    assert utc_stamp(1_732_800_000_999) == "20241128132000"


def test_job_ids_are_deterministic_and_distinct() -> None:
    args = ("AE Title Job Processor", "AET1", "lung", "P1")
    one = job_id(*args, first_partition=0, first_offset=10)
    assert one == job_id(*args, first_partition=0, first_offset=10)
    others = {
        job_id(*args, first_partition=1, first_offset=10),
        job_id(*args, first_partition=0, first_offset=11),
        job_id("AE Title Job Processor", "AET1", "heart", "P1", first_partition=0, first_offset=10),
        job_id("AE Title Job Processor", "AET2", "lung", "P1", first_partition=0, first_offset=10),
        job_id("AE Title Job Processor", "AET1", "lung", "P2", first_partition=0, first_offset=10),
    }
    assert one not in others and len(others) == 5


@given(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=4_102_444_800_000),
)
def test_job_name_equals_fix_job_name_of_the_whole_string(ae: str, pipeline: str, ms: int) -> None:
    name = job_name(ae, pipeline, ms)
    assert name == fix_job_name(f"{ae}-{pipeline}-{utc_stamp(ms)}")
    assert VALID.fullmatch(name) and len(name) <= MAX_JOB_NAME


@given(st.text(max_size=30), st.text(max_size=30), st.integers(0, 99), st.integers(0, 10**12))
def test_job_id_is_uuid5(ae: str, key: str, partition: int, offset: int) -> None:
    expected = uuid.uuid5(
        JOB_ID_NAMESPACE, "\x1f".join(("proc", ae, "lung", key, f"{partition}:{offset}"))
    )
    assert job_id("proc", ae, "lung", key, first_partition=partition, first_offset=offset) == str(
        expected
    )


@given(st.uuids(), st.text())
def test_uuid5_text_is_the_standard_librarys_uuid5(namespace: uuid.UUID, name: str) -> None:
    try:
        expected = str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:  # a lone surrogate: neither can encode the name
        with pytest.raises(UnicodeEncodeError):
            uuid5_text(namespace, name)
        return
    assert uuid5_text(namespace, name) == expected
