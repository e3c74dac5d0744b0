"""Exponential backoff with full jitter (pure; randomness injected)."""

from __future__ import annotations

import pytest

from processors.submit import RetryPolicy


def test_ceiling_doubles_from_initial_and_stops_at_max() -> None:
    policy = RetryPolicy(max_attempts=10, initial_s=0.5, max_s=5.0)
    assert [policy.ceiling_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.ceiling_s(10_000) == 5.0  # no float overflow for absurd counts


def test_full_jitter_spans_zero_to_ceiling() -> None:
    policy = RetryPolicy(initial_s=1.0, max_s=60.0)
    assert policy.delay_s(3, lambda: 0.0) == 0.0
    assert policy.delay_s(3, lambda: 0.5) == 2.0
    assert policy.delay_s(3, lambda: 0.999) == pytest.approx(3.996)


def test_retry_after_is_a_floor_but_capped_at_max() -> None:
    policy = RetryPolicy(initial_s=1.0, max_s=10.0)
    assert policy.delay_s(1, lambda: 0.1, at_least_s=7.0) == 7.0
    assert policy.delay_s(1, lambda: 0.1, at_least_s=86_400.0) == 10.0
    assert policy.delay_s(1, lambda: 0.5, at_least_s=0.0) == 0.5


def test_will_retry_until_max_attempts_of_the_round() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.will_retry(n) for n in (1, 2, 3, 4)] == [True, True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "at least 1"),
        ({"initial_s": 0.0}, "initial_s"),
        ({"initial_s": 5.0, "max_s": 1.0}, "initial_s <= max_s"),
    ],
)
def test_bad_policy_is_refused_with_a_reason(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
