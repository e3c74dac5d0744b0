"""streams.scp.checks: what makes a C-STORE-RQ an instance the SCP may store."""

from __future__ import annotations

import pytest

from streams.scp.checks import SOP_CLASS_UID, SOP_INSTANCE_UID, identity_problem, is_valid_uid

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(
    "uid",
    ["1", "1.2.3", "1.2.840.10008.5.1.4.1.1.2", "1.02.003", "1." + "2" * 62],
)
def test_uids_by_ps3_5_9_1_are_valid(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1.2\\3.4",
        "1." + "2" * 63,
        "1.2.abc",
        "..",
        "1..2",
        "1.2.",
        ".1.2",
        "../../etc/passwd",
        "/abs/path",
        "a/b",
        "C:\\x",
        "1.2\x003",
        "1.2 ",
        "9" * 300,
    ],
)
def test_anything_else_is_not(uid: str) -> None:
    assert not is_valid_uid(uid)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({SOP_CLASS_UID: CT, SOP_INSTANCE_UID: "1.2.3"}, None),
        ({SOP_CLASS_UID: CT}, "no SOP Instance UID (0008,0018)"),
        ({SOP_CLASS_UID: CT, SOP_INSTANCE_UID: "1.2.4"}, "SOP Instance UID (0008,0018) is not"),
        ({SOP_INSTANCE_UID: "1.2.3"}, "no SOP Class UID (0008,0016)"),
        ({SOP_CLASS_UID: "1.2.3.4", SOP_INSTANCE_UID: "1.2.3"}, "SOP Class UID (0008,0016) is not"),
        ({}, "no SOP Instance UID"),
    ],
)
def test_the_data_set_must_be_the_instance_the_request_names(
    values: dict[int, str], fragment: str | None
) -> None:
    problem = identity_problem(values, CT, "1.2.3")
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem
        assert "1.2.4" not in problem  # names tags, never quotes values
